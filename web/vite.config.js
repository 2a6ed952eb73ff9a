// Built at install time (npm ci && npm run build) into dist/, which the
// gateway serves at / with --web-root. Relative asset URLs, so the app also
// works from a sub-path. Nothing is loaded from the internet at run time.
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

export default defineConfig({
  base: "./",
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: true },
  server: {
    // `npm run dev` against scripts/dev.sh's load balancer
    proxy: {
      "/socket.io": { target: "http://127.0.0.1:3000", ws: true },
      "/api": "http://127.0.0.1:3000",
    },
  },
});
