import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

// The CRM serves the build (dist/) at /: hashed files under /assets/, index.html for every
// client-side route. `npm run dev` proxies the API to a CRM started by `vpbx up`.
const crm = process.env.VPBX_CRM_URL ?? "http://127.0.0.1:8001";
const CHART_PACKAGES = new RegExp(
  "/node_modules/(" +
    [
      "recharts",
      "victory-vendor",
      "d3-[a-z-]+",
      "internmap",
      "@reduxjs",
      "redux",
      "redux-thunk",
      "react-redux",
      "immer",
      "reselect",
      "es-toolkit",
      "decimal\\.js-light",
      "eventemitter3",
      "tiny-invariant",
      "use-sync-external-store",
      "react-is",
    ].join("|") +
    ")/",
);

export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "dist",
    assetsDir: "assets",
    emptyOutDir: true,
    target: "es2021",
    // The libraries in a chunk of their own: they change less often than the app, so a
    // new build of the app leaves them cached in browsers.
    rollupOptions: {
      output: {
        // The charts (recharts and what it brings: d3 parts, redux) only for the pages that
        // draw them, loaded when one is opened: most agents never open one.
        manualChunks(id) {
          if (!id.includes("/node_modules/")) return undefined;
          return CHART_PACKAGES.test(id) ? "charts" : "vendor";
        },
      },
    },
  },
  server: {
    proxy: {
      "/v1": crm,
      "/config.json": crm,
    },
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
