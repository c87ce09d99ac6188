import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { ClientsContext, defaultClients } from "./api";
import { Dashboard } from "./Dashboard";
import "./styles.css";

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <ClientsContext.Provider value={defaultClients()}>
      <Dashboard />
    </ClientsContext.Provider>
  </StrictMode>,
);
