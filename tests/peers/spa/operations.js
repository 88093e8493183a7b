// A partner's SPA built with Apollo Client, as far as vouchsafe sees it: its operations.
// test_apollo.py has Apollo's own generate-persisted-query-manifest write their manifest from
// this file, loads it into an allow-list server, and apollo.mjs sends them with the real client.
import { gql } from "@apollo/client";

export const SIGN_UP = gql`
  mutation SignUp($input: SignUpInput!) {
    signUp(input: $input) {
      user { id email }
      errors { code field message }
    }
  }
`;

export const SIGN_IN = gql`
  mutation SignIn($input: SignInInput!) {
    signIn(input: $input) {
      token
      errors { code field message }
    }
  }
`;

export const PRODUCTS = gql`
  query Products {
    products { code name }
  }
`;

export const VIEWER = gql`
  query Viewer {
    viewer { user { email } }
  }
`;

export const VOUCHER_REDEEM = gql`
  mutation VoucherRedeem($input: VoucherRedeemInput!) {
    voucherRedeem(input: $input) {
      certificateRequest { id }
      errors { code field message }
    }
  }
`;

export const ACCOUNT_UPDATED = gql`
  subscription AccountUpdated {
    accountUpdated { name }
  }
`;
