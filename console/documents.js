// Every GraphQL document the console sends, and nothing else: a persisted-documents
// manifest is generated from this module (each export is one named operation).

const MONEY = "amount currencyCode";
const ERRORS = "errors { code field message }";
const SETTINGS = `financeSettings { billToBalanceEnabled creditCardEnabled defaultPaymentMethod lowBalanceThreshold { ${MONEY} } }`;
const ACCOUNT = `id name locale currency isPartner balance { ${MONEY} } ${SETTINGS}`;
const ORDER_ROW = `id number customerName status createdAt voucherCount total { ${MONEY} }
  statusCounts { validUnused validUsed expired cancelled total }`;
const ORDER_PAGE = `${ORDER_ROW} notes paymentMethod cancellable cancelBlockers { code message } csvUrl
  pdf { status url generatedAt error }
  lines { position productCode productName quantity validityYears fqdns wildcards unitPrice { ${MONEY} } linePrice { ${MONEY} } }
  history(first: 50) { edges { node { id kind createdAt actor details } } }`;

export const Viewer = `query Viewer { viewer { user { id email role isStaff } account { ${ACCOUNT} } } }`;

export const SignIn = `mutation SignIn($input: SignInInput!) {
  signIn(input: $input) { token expiresAt user { id email role isStaff } ${ERRORS} } }`;

export const SignUp = `mutation SignUp($input: SignUpInput!) { signUp(input: $input) { user { id } ${ERRORS} } }`;

export const SignOut = `mutation SignOut { signOut { signedOut ${ERRORS} } }`;

export const AccountUpdate = `mutation AccountUpdate($input: AccountUpdateInput!) {
  accountUpdate(input: $input) { account { ${ACCOUNT} } ${ERRORS} } }`;

export const AccountLive = `subscription AccountLive { accountUpdated { ${ACCOUNT} } }`;

export const Products = `query Products { products { code name validityYears includedFqdns maxFqdns maxWildcards isEv } }`;

export const Quote = `query Quote($input: VoucherQuoteInput!) {
  voucherQuote(input: $input) { lines { unitPrice { ${MONEY} } linePrice { ${MONEY} } } total { ${MONEY} } ${ERRORS} } }`;

export const Orders = `query Orders($first: Int, $after: String, $before: String, $last: Int, $filter: VoucherOrderFilter) {
  voucherOrders(first: $first, after: $after, last: $last, before: $before, filter: $filter) {
    totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { node { ${ORDER_ROW} } } } }`;

export const OrderRowLive = `subscription OrderRowLive($id: ID!) { voucherOrderUpdated(id: $id) { ${ORDER_ROW} } }`;

export const OrderByNumber = `query OrderByNumber($number: String!) {
  voucherOrders(first: 1, filter: { number: $number }) { edges { node { ${ORDER_PAGE} } } } }`;

export const OrderLive = `subscription OrderLive($id: ID!) { voucherOrderUpdated(id: $id) { ${ORDER_PAGE} } }`;

export const OrderVouchers = `query OrderVouchers($id: ID!, $first: Int, $after: String) {
  node(id: $id) { ... on VoucherOrder { vouchers(first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor } edges { node { id code status expiresAt usedAt } } } } } }`;

export const OrderCreate = `mutation OrderCreate($input: VoucherOrderCreateInput!) {
  voucherOrderCreate(input: $input) { order { id number } ${ERRORS} } }`;

export const OrderCancel = `mutation OrderCancel($input: VoucherOrderCancelInput!) {
  voucherOrderCancel(input: $input) { order { id status } ${ERRORS} } }`;

export const OrderPdfRender = `mutation OrderPdfRender($input: VoucherOrderPdfRenderInput!) {
  voucherOrderPdfRender(input: $input) { order { id pdf { status } } errors { code message } } }`;

export const CodesReveal = `mutation CodesReveal($input: VoucherCodesRevealInput!) {
  voucherCodesReveal(input: $input) { codes { code voucher { id } } ${ERRORS} } }`;

export const SettingsUpdate = `mutation SettingsUpdate($input: FinanceSettingsUpdateInput!) {
  financeSettingsUpdate(input: $input) { ${SETTINGS} ${ERRORS} } }`;

export const Deposit = `mutation Deposit($input: FundsDepositInput!) {
  fundsDeposit(input: $input) { ledgerEntry { id amount { ${MONEY} } } account { id balance { ${MONEY} } } ${ERRORS} } }`;

export const Ledger = `query Ledger($first: Int, $after: String, $filter: LedgerFilter) {
  viewer { account { id ledger(first: $first, after: $after, filter: $filter) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { id kind memo createdAt byApiKey gatewayReference amount { ${MONEY} } balanceAfter { ${MONEY} } } } } } } }`;

export const Users = `query Users { viewer { account { id users(first: 100) { edges { node { id email role createdAt } } } } } }`;

export const UserCreate = `mutation UserCreate($input: UserCreateInput!) { userCreate(input: $input) { user { id email role } ${ERRORS} } }`;

export const ApiKeys = `query ApiKeys { viewer { account { id apiKeys(first: 100) {
  edges { node { id name channel prefix createdAt lastUsedAt revokedAt } } } } } }`;

export const ApiKeyCreate = `mutation ApiKeyCreate($input: ApiKeyCreateInput!) {
  apiKeyCreate(input: $input) { secret apiKey { id name } ${ERRORS} } }`;

export const ApiKeyRevoke = `mutation ApiKeyRevoke($input: ApiKeyRevokeInput!) {
  apiKeyRevoke(input: $input) { apiKey { id revokedAt } ${ERRORS} } }`;

export const StaffAccounts = `query StaffAccounts($first: Int, $after: String, $search: String) {
  accounts(first: $first, after: $after, search: $search) { totalCount pageInfo { hasNextPage endCursor }
    edges { node { id name locale isPartner createdAt balance { ${MONEY} } } } } }`;

export const PartnerEnable = `mutation PartnerEnable($input: PartnerEnableInput!) {
  partnerEnable(input: $input) { account { id isPartner } ${ERRORS} } }`;

export const BalanceAdjust = `mutation BalanceAdjust($input: BalanceAdjustInput!) {
  balanceAdjust(input: $input) { account { id balance { ${MONEY} } } ${ERRORS} } }`;

export const FailedJobs = `query FailedJobs { failedJobs(first: 100) { id task attempts lastError createdAt } }`;

export const JobRetry = `mutation JobRetry($input: JobRetryInput!) { jobRetry(input: $input) { retried ${ERRORS} } }`;

const ENDPOINT = "id url events enabled description disabledReason createdAt";
export const Webhooks = `query Webhooks { viewer { account { id webhookEndpoints(first: 50) { edges { node { ${ENDPOINT}
  deliveries(first: 10) { edges { node { id eventType status attempts lastStatusCode lastError nextAttemptAt createdAt } } } } } } } } }`;

export const WebhookCreate = `mutation WebhookCreate($input: WebhookEndpointCreateInput!) {
  webhookEndpointCreate(input: $input) { secret endpoint { ${ENDPOINT} } ${ERRORS} } }`;

export const WebhookUpdate = `mutation WebhookUpdate($input: WebhookEndpointUpdateInput!) {
  webhookEndpointUpdate(input: $input) { endpoint { ${ENDPOINT} } ${ERRORS} } }`;

export const WebhookDelete = `mutation WebhookDelete($input: WebhookEndpointDeleteInput!) {
  webhookEndpointDelete(input: $input) { deletedId ${ERRORS} } }`;

export const WebhookTest = `mutation WebhookTest($input: WebhookEndpointTestInput!) {
  webhookEndpointTest(input: $input) { delivery { id } ${ERRORS} } }`;

export const WebhookRotate = `mutation WebhookRotate($input: WebhookEndpointRotateSecretInput!) {
  webhookEndpointRotateSecret(input: $input) { secret ${ERRORS} } }`;

export const DeliveryRetry = `mutation DeliveryRetry($input: WebhookDeliveryRetryInput!) {
  webhookDeliveryRetry(input: $input) { delivery { id status } ${ERRORS} } }`;
