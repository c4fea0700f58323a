import { defineConfig } from "vite";

// The bundle goes into the theme's resources/. Keycloak reads
// resources/.vite/manifest.json to put the entry script and styles into the
// console's page (index.ftl: entryScript, entryStyles, entryImports), and
// its import map gives React from Keycloak's own common theme, so React is
// external here, as in Keycloak's own console and its quickstart.
export default defineConfig({
  base: "",
  esbuild: { jsx: "automatic" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    manifest: true,
    target: "es2022",
    chunkSizeWarningLimit: 8000,
    rollupOptions: {
      input: "src/main.tsx",
      external: ["react", "react/jsx-runtime", "react-dom"],
      // One file: Keycloak turns the manifest's shared-chunk keys into
      // modulepreload links that do not resolve (404s in the console).
      output: { inlineDynamicImports: true },
    },
  },
});
