import "@patternfly/patternfly/patternfly-addons.css";
import "@patternfly/react-core/dist/styles/base.css";
import "@keycloak/keycloak-admin-ui/styles.css";

import { KeycloakProvider } from "@keycloak/keycloak-admin-ui";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { createHashRouter, RouterProvider } from "react-router-dom";
import { ConsoleApp } from "./App";
import { environment } from "./environment";
import { i18n } from "./i18n";
import { consoleRoutes } from "./routes";

// As Keycloak's own console starts (js/apps/admin-ui/src/main.tsx), with
// this theme's App and routes in place of Keycloak's.
await i18n.init();

const router = createHashRouter([
  {
    path: "/",
    element: (
      <KeycloakProvider environment={environment}>
        <ConsoleApp />
      </KeycloakProvider>
    ),
    children: consoleRoutes,
  },
]);

createRoot(document.getElementById("app")!).render(
  <StrictMode>
    <RouterProvider router={router} />
  </StrictMode>,
);
