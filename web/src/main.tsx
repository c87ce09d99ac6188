import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { ClientsContext, defaultClients } from "./api";
import { App } from "./App";
import "./styles.css";

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <ClientsContext.Provider value={defaultClients()}>
      <App />
    </ClientsContext.Provider>
  </StrictMode>,
);
