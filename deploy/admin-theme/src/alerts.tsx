import {
  Alert,
  AlertActionCloseButton,
  AlertGroup,
  AlertVariant,
} from "@patternfly/react-core";
import { createContext, PropsWithChildren, useCallback, useContext, useMemo, useState } from "react";

// @keycloak/keycloak-admin-ui bundles its own copy of the console's alert
// context and does not export useAlerts, so the Communities pages show their
// alerts themselves, the way the console does (toasts, newest first, gone
// after 8 s, data-testid "last-alert" on the newest). PatternFly's own
// timeout waits while the pointer is over an alert or it holds the focus,
// so one being read is not taken away.

type Entry = { id: number; title: string; variant: AlertVariant; detail?: string };

type AddAlert = (title: string, variant?: AlertVariant, detail?: string) => void;

const AlertsContext = createContext<AddAlert | undefined>(undefined);

let nextId = 0;

const ALERT_MS = 8000;

export const AlertsProvider = ({ children }: PropsWithChildren) => {
  const [alerts, setAlerts] = useState<Entry[]>([]);
  const remove = (id: number) => setAlerts((as) => as.filter((a) => a.id !== id));
  const add = useCallback<AddAlert>((title, variant = AlertVariant.success, detail) => {
    const entry = { id: ++nextId, title, variant, detail };
    setAlerts((as) => [entry, ...as]);
  }, []);
  return (
    <AlertsContext.Provider value={add}>
      <AlertGroup isToast isLiveRegion>
        {alerts.map((a, i) => (
          <Alert
            key={a.id}
            data-testid={i === 0 ? "last-alert" : "alert"}
            variant={a.variant}
            title={a.title}
            timeout={ALERT_MS}
            onTimeout={() => remove(a.id)}
            actionClose={<AlertActionCloseButton title="Close" onClose={() => remove(a.id)} />}
          >
            {a.detail}
          </Alert>
        ))}
      </AlertGroup>
      {children}
    </AlertsContext.Provider>
  );
};

export const useAlerts = () => {
  const addAlert = useContext(AlertsContext);
  if (!addAlert) throw new Error("useAlerts outside AlertsProvider");
  return useMemo(() => ({ addAlert }), [addAlert]);
};
