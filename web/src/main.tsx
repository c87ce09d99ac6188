import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { ClientsContext, defaultClients } from "./api";
import { App } from "./App";
import { takeTokenFromUrl } from "./auth";
import { AuthGate } from "./components/SignIn";
import "./styles.css";

takeTokenFromUrl();
createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <AuthGate>
      <ClientsContext.Provider value={defaultClients()}>
        <App />
      </ClientsContext.Provider>
    </AuthGate>
  </StrictMode>,
);
