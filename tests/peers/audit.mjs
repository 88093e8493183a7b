// The graphql-http package's server audits (GraphQL over HTTP conformance) against URL.
// Exits 1 when a MUST fails (status "error") or a SHOULD does (a "warn" named SHOULD);
// the MAYs are reported only. Usage: node audit.mjs http://127.0.0.1:PORT/graphql
import { auditServer } from "graphql-http";

const url = process.argv[2];
if (!url) {
  console.error("usage: node audit.mjs URL");
  process.exit(2);
}

const results = await auditServer({ url });
const failed = [];
const counts = { ok: 0, must: 0, should: 0, may: 0 };
for (const result of results) {
  if (result.status === "ok") {
    counts.ok += 1;
    continue;
  }
  const level = result.status === "error" ? "must" : result.name.startsWith("SHOULD") ? "should" : "may";
  counts[level] += 1;
  const line = `${level.toUpperCase()} ${result.id} ${result.name}: ${result.reason}`;
  if (level === "may") {
    console.log(`  (optional) ${line}`);
  } else {
    failed.push(line);
  }
}
console.log(
  `graphql-http audit: ${results.length} audits, ${counts.ok} passed, ` +
    `${counts.must} MUST and ${counts.should} SHOULD failed, ${counts.may} optional (MAY) not met`,
);
for (const line of failed) {
  console.log(`FAILED ${line}`);
}
process.exit(failed.length ? 1 : 0);
