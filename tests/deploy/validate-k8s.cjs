// Validates every object of the Kubernetes YAML streams named on the command
// line against the OpenAPI schemas bundled with the npm package
// kubernetes-models@4 (Kubernetes 1.27; offline, ajv). Objects of kinds the
// package has no schema for (CRDs such as ServiceMonitor) are listed as not
// schema-checked; tests/deploy/structure.py checks those. Exit 0 when every
// checked object is valid, 1 otherwise, 77 when the packages are missing.
"use strict";
const fs = require("fs");

let YAML;
try {
  YAML = require("yaml");
  require("kubernetes-models/package.json");
} catch (e) {
  console.log("SKIP: npm packages kubernetes-models@4 and yaml not found (" + e.code + ")");
  process.exit(77);
}

let failed = 0;
let checked = 0;
for (const file of process.argv.slice(2)) {
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"));
  for (const doc of docs) {
    if (doc.errors.length) {
      console.log(`${file}: YAML error: ${doc.errors[0].message}`);
      failed++;
      continue;
    }
    const obj = doc.toJS();
    if (obj === null) continue;
    const [group, version] = obj.apiVersion.includes("/")
      ? obj.apiVersion.split("/")
      : [null, obj.apiVersion];
    const mod = group ? `kubernetes-models/${group}/${version}/${obj.kind}` : `kubernetes-models/${version}/${obj.kind}`;
    const what = `${file}: ${obj.apiVersion} ${obj.kind} ${obj.metadata && obj.metadata.name}`;
    let Cls;
    try {
      Cls = require(mod)[obj.kind];
    } catch (e) {
      console.log(`${what}: no bundled schema (custom resource?), not schema-checked`);
      continue;
    }
    try {
      new Cls(obj).validate();
      checked++;
    } catch (e) {
      console.log(`${what}: INVALID: ${e.message}`);
      failed++;
    }
  }
}
console.log(`${checked} objects valid against kubernetes-models schemas, ${failed} invalid`);
process.exit(failed ? 1 : 0);
