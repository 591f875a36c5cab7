// Bundles the browser code with esbuild (`npm run build`; `npm run watch` rebuilds on every save).
//
//   widget.js      -> occlusion_widget/static/widget.js      the widget's one ES module (anywidget's _esm)
//   widget.css     -> occlusion_widget/static/widget.css     its styles (anywidget's _css)
//   standalone.js  -> occlusion_widget/static/standalone.js  the standalone report's model shim
//   audit/gallery.js, audit/gallery.css -> occlusion_widget/static/audit/  the audit gallery widget
//
// `--outdir DIR` writes elsewhere (the tests bundle into a temporary folder).
import * as esbuild from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const at = args.indexOf("--outdir");
if (at >= 0 && !args[at + 1]) throw new Error("build.mjs: --outdir needs a folder");
const outdir = at >= 0 ? path.resolve(args[at + 1]) : path.join(here, "..", "occlusion_widget", "static");

/** @type {import("esbuild").BuildOptions} */
const options = {
  entryPoints: ["widget.js", "widget.css", "standalone.js", "audit/gallery.js", "audit/gallery.css"].map((name) => path.join(here, name)),
  outbase: here, // audit/gallery.js -> <outdir>/audit/gallery.js
  outdir,
  bundle: true,
  format: "esm",
  // JupyterLab 4, Notebook 7, VS Code and marimo all run in current browsers.
  target: ["es2022"],
  logLevel: "info",
};

if (args.includes("--watch")) {
  const context = await esbuild.context(options);
  await context.watch();
} else {
  await esbuild.build(options);
}
