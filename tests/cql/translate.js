// Translates CQL to ELM with the reference CQL-to-ELM translator (@cqframework/cql, the
// cqframework translator built for JavaScript), FHIR 4.0.1 read from cql-exec-fhir's model info.
// argv[2]: the node_modules directory. stdin: {"<key>": "<CQL text>", ...} (a library may include
// another one of them by name and version)
// stdout: {"<key>": {"elm": <ELM JSON>, "errors": ["line:column message", ...]}, ...}
'use strict';
const fs = require('fs');
const path = require('path');
const { pathToFileURL } = require('url');

async function main() {
  // stdout is the answer: what the translator prints (its logging, on loading an included library)
  // goes to stderr.
  const answer = process.stdout.write.bind(process.stdout);
  process.stdout.write = process.stderr.write.bind(process.stderr);
  const modules = process.argv[2];
  const load = (file) => import(pathToFileURL(path.join(modules, '@cqframework', 'cql', file)).href);
  const { SystemModelInfoProvider } = await load('cql.mjs');
  const translator = await load('cql-to-elm.mjs');
  const fhirXml = fs.readFileSync(path.join(modules, 'cql-exec-fhir', 'lib', 'modelInfos', 'fhir-modelinfo-4.0.1.xml'), 'utf8');
  const models = new translator.ModelManager();
  models.modelInfoLoader.registerModelInfoProvider(new SystemModelInfoProvider());
  models.modelInfoLoader.registerModelInfoProvider(translator.createModelInfoProvider(
    (id, _system, version) => (id === 'FHIR' && (version === null || version === '4.0.1') ? translator.stringAsSource(fhirXml) : null)));
  // covreq's CQL has calendar durations only (30 days, 21 years); a unit service that knows them
  // and refuses every other unit stands in for UCUM, which this build does not bundle.
  const calendar = /^(year|month|week|day)s?$/;
  const refuse = () => { throw new Error('covreq CQL converts no UCUM units'); };
  const units = translator.createUcumService(refuse, (unit) => (calendar.test(unit) ? null : `not a calendar unit: ${unit}`),
    refuse, refuse);
  const sources = JSON.parse(fs.readFileSync(0, 'utf8'));
  // A library may include another of the same batch, by its CQL name and version.
  const byName = {};
  for (const text of Object.values(sources)) {
    const header = /^library\s+"?([A-Za-z0-9_]+)"?\s+version\s+'([^']*)'/.exec(text);
    if (header) byName[`${header[1]}|${header[2]}`] = text;
  }
  const included = translator.createLibrarySourceProvider((id, _system, version) => {
    const text = byName[`${id}|${version}`];
    return text === undefined ? null : translator.stringAsSource(text);
  });
  const out = {};
  for (const [key, text] of Object.entries(sources)) {
    const libraries = new translator.LibraryManager(models, undefined, undefined, units);
    libraries.librarySourceLoader.registerProvider(included);
    const translated = translator.CqlTranslator.fromText(text, libraries);
    const errors = translated.errors.asJsReadonlyArrayView();
    out[key] = {
      elm: JSON.parse(translated.toJson()),
      errors: Array.from(errors, (e) => `${e.locator ? `${e.locator.startLine}:${e.locator.startChar} ` : ''}${e.message}`),
    };
  }
  answer(JSON.stringify(out));
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err));
  process.exit(1);
});
