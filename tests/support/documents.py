"""GraphQL documents more than one test module sends."""

API_KEY_CREATE = """
mutation KeyCreate($input: ApiKeyCreateInput!) {
  apiKeyCreate(input: $input) { secret apiKey { id name channel prefix } errors { code field message } }
}"""
API_KEY_REVOKE = """
mutation KeyRevoke($input: ApiKeyRevokeInput!) {
  apiKeyRevoke(input: $input) { apiKey { id revokedAt } errors { code field message } }
}"""
REDEEM = """mutation R($input: VoucherRedeemInput!) { voucherRedeem(input: $input) {
  certificateRequest { id commonName additionalFqdns wildcards hasCsr status } errors { code field message } } }"""
REVEAL = """mutation R($id: ID!) { voucherCodesReveal(input: {orderId: $id}) { codes { code } errors { code } } }"""
ORDER_CANCEL = """mutation C($id: ID!) { voucherOrderCancel(input: {orderId: $id}) { errors { code message } } }"""
THRESHOLD_UPDATE = """mutation S($t: Decimal) {
  financeSettingsUpdate(input: {lowBalanceThreshold: $t}) { errors { code } } }"""
