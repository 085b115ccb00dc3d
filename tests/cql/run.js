// Runs an ELM library with the CQL reference engine (cql-execution + cql-exec-fhir).
// stdin: {"libraries": {"<key>": <ELM JSON>, ...},
//         "cases": [{"library": "<key>", "bundle": <FHIR Bundle>, "parameters": {...}}, ...]}
// (a parameter of a FHIR type is given as the resource's JSON)
// stdout: one object per case, each define's value as JSON (Dates as ISO text, FHIR data left out).
'use strict';
const cql = require('cql-execution');
const fhir = require('cql-exec-fhir');

const DATE = '{urn:hl7-org:elm-types:r1}Date';
const FHIR = '{http://hl7.org/fhir}';

function readStdin() {
  return new Promise((resolve) => {
    const chunks = [];
    process.stdin.on('data', (chunk) => chunks.push(chunk));
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

// Parameters typed as the library declares them (JSON has no dates; FHIR resources are wrapped
// as cql-exec-fhir reads them).
function typed(elm, given, wrapper) {
  const out = {};
  for (const def of (elm.library.parameters || {}).def || []) {
    if (!(def.name in given) || given[def.name] === null) continue;
    const spec = def.parameterTypeSpecifier || {};
    const value = given[def.name];
    if (spec.name === DATE) out[def.name] = cql.Date.parse(value);
    else if ((spec.name || '').startsWith(FHIR)) out[def.name] = wrapper.wrap(value);
    else out[def.name] = value;
  }
  return out;
}

function plain(value) {
  if (value === null || value === undefined) return null;
  if (Array.isArray(value)) return value.map(plain);
  if (value instanceof cql.Date || value instanceof cql.DateTime) return value.toString();
  if (typeof value === 'object') return undefined; // FHIR resources: not compared
  return value;
}

async function main() {
  const input = JSON.parse(await readStdin());
  // Every library given can be included by the others (by its identifier and version).
  const repository = new cql.Repository(Object.values(input.libraries));
  const libraries = {};
  for (const [key, elm] of Object.entries(input.libraries)) libraries[key] = new cql.Library(elm, repository);
  const wrapper = fhir.FHIRWrapper.FHIRv401();
  const results = [];
  // One source for all cases: building one reads the FHIR model info, which costs more than a case.
  const source = fhir.PatientSource.FHIRv401();
  for (const item of input.cases) {
    const elm = input.libraries[item.library];
    const library = libraries[item.library];
    source.loadBundles([item.bundle]);
    const executor = new cql.Executor(library, new cql.CodeService({}), typed(elm, item.parameters || {}, wrapper));
    const answer = await executor.exec(source);
    const patients = Object.values(answer.patientResults);
    if (patients.length !== 1) throw new Error(`a case ran for ${patients.length} patients, not 1`);
    const found = {};
    for (const [name, value] of Object.entries(patients[0] || {})) {
      const shown = plain(value);
      if (shown !== undefined) found[name] = shown;
    }
    results.push(found);
  }
  process.stdout.write(JSON.stringify(results));
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err));
  process.exit(1);
});
