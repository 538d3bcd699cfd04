// Parse Mermaid flowcharts with Mermaid's own parser (no browser) and print what it understood.
//
// Setup (once; node_modules stay out of git):
//   npm install --prefix .cache/npm mermaid@11 jsdom
// The packages are looked up in $VENVSTACKS_NPM_DIR, else in <repo>/.cache/npm.
//
// Usage:
//   node tests/tools/check_mermaid.mjs [FILE]          one diagram (FILE or stdin)
//   node tests/tools/check_mermaid.mjs --json [FILE]   a JSON array of diagrams
//
// Output (stdout, JSON): for each diagram either
//   {"ok": true, "type", "direction", "vertices": [{"id", "text", "classes"}],
//    "edges": [{"start", "end", "type"}], "subgraphs": [{"id", "title", "nodes"}],
//    "classes": {"name": ["style", ...]}}
// or {"ok": false, "error": "..."}. Texts are what a reader sees: Mermaid's "#name;" entities
// decoded and the label's HTML reduced to its text.
// Exit codes: 0 all parsed; 1 a diagram failed to parse (single-diagram mode); 2 usage;
// 3 node or the npm packages are unavailable (callers should skip, not fail).

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const npmDir = resolve(process.env.VENVSTACKS_NPM_DIR || join(here, "..", "..", ".cache", "npm"));

function unavailable(message) {
  process.stderr.write(`mermaid check unavailable: ${message}\n`);
  process.exit(3);
}

const args = process.argv.slice(2);
const many = args[0] === "--json";
if (many) args.shift();
if (args.length > 1) {
  process.stderr.write("usage: check_mermaid.mjs [--json] [FILE]\n");
  process.exit(2);
}
const input = readFileSync(args.length ? args[0] : 0, "utf-8");
const diagrams = many ? JSON.parse(input) : [input];

let mermaid;
let document;
try {
  const require = createRequire(join(npmDir, "package.json"));
  const { JSDOM } = await import(pathToFileURL(require.resolve("jsdom")).href);
  const dom = new JSDOM("<!doctype html><html><body></body></html>");
  // Mermaid's sanitiser (DOMPurify) needs a window, even just to parse.
  globalThis.window = dom.window;
  globalThis.document = document = dom.window.document;
  mermaid = (await import(pathToFileURL(require.resolve("mermaid")).href)).default;
  mermaid.initialize({ startOnLoad: false });
} catch (err) {
  unavailable(`cannot load mermaid and jsdom from ${npmDir} (${err.message})`);
}

// Mermaid stores "#quot;" as "ﬂ°quot¶ß" and "#35;" as "ﬂ°°35¶ß" until it renders the label.
function shown(text) {
  const html = String(text ?? "")
    .replace(/ﬂ°°/g, "&#")
    .replace(/ﬂ°/g, "&")
    .replace(/¶ß/g, ";");
  const div = document.createElement("div");
  div.innerHTML = html;
  return div.textContent;
}

async function check(source) {
  try {
    await mermaid.parse(source);
    const diagram = await mermaid.mermaidAPI.getDiagramFromText(source);
    const db = diagram.db;
    const result = { ok: true, type: diagram.type };
    if (typeof db.getVertices === "function") {
      result.direction = typeof db.getDirection === "function" ? db.getDirection() : db.direction;
      result.vertices = [...db.getVertices().values()].map((v) => ({
        id: v.id,
        text: shown(v.text),
        classes: [...(v.classes ?? [])],
      }));
      result.edges = db.getEdges().map((e) => ({ start: e.start, end: e.end, type: e.type }));
      result.subgraphs = db.getSubGraphs().map((s) => ({
        id: s.id,
        title: shown(s.title),
        nodes: [...s.nodes],
      }));
      result.classes = Object.fromEntries(
        [...db.getClasses().entries()].map(([name, c]) => [name, [...(c.styles ?? [])]]),
      );
    }
    return result;
  } catch (err) {
    return { ok: false, error: String(err?.message ?? err) };
  }
}

const results = [];
for (const source of diagrams) {
  // Each diagram starts from a clean state: the flowchart db is shared between parses.
  mermaid.mermaidAPI.reset?.();
  results.push(await check(source));
}
process.stdout.write(JSON.stringify(many ? results : results[0], null, 2) + "\n");
process.exit(!many && !results[0].ok ? 1 : 0);
