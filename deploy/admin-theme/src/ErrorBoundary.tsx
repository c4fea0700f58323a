import { ErrorRenderer } from "@keycloak/keycloak-admin-ui";
import { Component, type ErrorInfo, type PropsWithChildren } from "react";

type State = { error?: Error };

/**
 * Shows a page's error with the console's own ErrorRenderer (Keycloak's
 * ErrorBoundaryFallback is bundled inside @keycloak/keycloak-admin-ui and not
 * exported).
 */
export class ErrorBoundary extends Component<PropsWithChildren, State> {
  state: State = {};

  static getDerivedStateFromError(error: Error): State {
    return { error };
  }

  componentDidCatch(error: Error, info: ErrorInfo) {
    console.error(error, info.componentStack);
  }

  render() {
    return this.state.error ? <ErrorRenderer error={this.state.error} /> : this.props.children;
  }
}
