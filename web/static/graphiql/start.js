// GraphiQL against this server's own /graphql; every asset comes from this server (no CDN).
(function () {
  "use strict";

  var EXAMPLE = [
    "# vouchsafe's GraphQL API. Sign in with the signIn mutation, then put",
    '# {"Authorization": "Bearer <token>"} in the Headers tab below.',
    "",
    "{",
    "  products {",
    "    code",
    "    name",
    "  }",
    "}",
    "",
  ].join("\n");

  var fetcher = GraphiQL.createFetcher({
    url: window.location.origin + "/graphql",
    headers: { Accept: "application/graphql-response+json, application/json" },
  });

  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: EXAMPLE,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false,
    }),
  );
})();
