// Validate docs/asyncapi.yaml with the official AsyncAPI parser (make lint runs it).
//
// Usage: node deploy/tools/asyncapi-validate.mjs [docs/asyncapi.yaml]
// Exits 1 when the document has any diagnostic of severity error; warnings are printed but
// pass (the parser's style rules are advice, the spec's rules are not). Information and hints
// are not printed: the one we get says AsyncAPI 3.1 exists, and the document is 3.0 on purpose. The protobuf schema
// parser is registered so every message payload's embedded .proto source is parsed too: a
// payload protobufjs cannot read is an error, not a skipped schema.
import { readFile } from "node:fs/promises";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";
import { ProtoBuffSchemaParser } from "@asyncapi/protobuf-schema-parser";

const path = process.argv[2] ?? "docs/asyncapi.yaml";
const parser = new Parser();
parser.registerSchemaParser(ProtoBuffSchemaParser());

const { document, diagnostics } = await parser.parse(await readFile(path, "utf8"), {
  source: path,
});
const severities = { 0: "error", 1: "warning", 2: "information", 3: "hint" };
for (const d of diagnostics.filter((d) => d.severity <= DiagnosticSeverity.Warning)) {
  const where = d.path && d.path.length ? d.path.join(".") : "(document)";
  console.error(`${path}: ${severities[d.severity] ?? d.severity}: ${where}: ${d.message}`);
}
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
if (errors.length || document === undefined) {
  console.error(`${path}: invalid AsyncAPI (${errors.length} error(s))`);
  process.exit(1);
}
console.log(`${path}: valid AsyncAPI ${document.version()}, ${document.channels().length} channels`);
