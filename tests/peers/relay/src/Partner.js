// A partner's SPA built with Relay, as far as vouchsafe sees it: its operations, named as the
// Relay compiler requires (module name first). test_manifest_tools.py copies this directory,
// runs the real compiler with `persistConfig` on the copy, and sends the operations by id.
import { graphql } from "react-relay";

export const products = graphql`
  query PartnerProductsQuery {
    products { code name }
  }
`;

export const signUp = graphql`
  mutation PartnerSignUpMutation($input: SignUpInput!) {
    signUp(input: $input) {
      user { email }
      errors { code field message }
    }
  }
`;

export const signIn = graphql`
  mutation PartnerSignInMutation($input: SignInInput!) {
    signIn(input: $input) {
      token
      errors { code field message }
    }
  }
`;

export const viewer = graphql`
  query PartnerViewerQuery {
    viewer { user { email } }
  }
`;
