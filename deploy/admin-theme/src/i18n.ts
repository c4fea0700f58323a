import { createInstance } from "i18next";
import FetchBackend from "i18next-fetch-backend";
import { initReactI18next } from "react-i18next";
import { environment } from "./environment";

type KeyValue = { key: string; value: string };

// The console's texts come from Keycloak's message endpoint for the realm's
// admin theme: Keycloak's own bundle, with theme/communities/admin/messages
// on top (the Communities page's texts).
export const i18n = createInstance({
  fallbackLng: "en",
  interpolation: { escapeValue: false },
  backend: {
    loadPath: `${environment.serverBaseUrl}/resources/${encodeURIComponent(environment.realm)}/admin/{{lng}}`,
    parse: (data: string) => {
      const result: Record<string, string> = {};
      (JSON.parse(data) as KeyValue[]).forEach((v) => (result[v.key] = v.value));
      return result;
    },
  },
});

i18n.use(FetchBackend);
i18n.use(initReactI18next);
