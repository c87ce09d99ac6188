// Satlas dashboard. Two pages: index.html (the app) and dashboard.html (the live monitoring
// view the older system had at /dashboard.html). The generated client lives outside web/, in
// ../gen/ts; its imports of @bufbuild/protobuf resolve from web/node_modules (dedupe + alias).
import { fileURLToPath } from "node:url";
import { resolve } from "node:path";
import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

const here = fileURLToPath(new URL(".", import.meta.url));
const gen = resolve(here, "../gen/ts");
// `npm run dev` talks to the Envoy of `make run` unless VITE_PROXY_TARGET says otherwise.
const proxyTarget = process.env.VITE_PROXY_TARGET ?? "http://127.0.0.1:8080";

export default defineConfig({
  base: "./", // works at / behind Envoy and under any prefix
  plugins: [react()],
  resolve: {
    alias: [{ find: /^@gen\//, replacement: gen + "/" }],
    dedupe: ["@bufbuild/protobuf", "@connectrpc/connect", "react", "react-dom"],
  },
  server: {
    fs: { allow: [here, gen] },
    proxy: {
      "^/satlas\\.v1\\.": { target: proxyTarget, changeOrigin: false },
    },
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    rollupOptions: {
      input: {
        main: resolve(here, "index.html"),
        dashboard: resolve(here, "dashboard.html"),
      },
      output: {
        // Libraries in their own chunk; the page entries (src/main.tsx, src/dashboard-main.tsx)
        // must stay in their own chunks, or each page would run both.
        manualChunks: (id) => (id.includes("/node_modules/") ? "vendor" : undefined),
      },
    },
  },
  test: {
    environment: "jsdom",
    include: ["tests/**/*.test.{ts,tsx}"],
    setupFiles: ["tests/setup.ts"],
    restoreMocks: true,
  },
});
