// Checking a message against the JSON Schema that `taskq schema` prints
// (examples/schema/<task>.json, committed next to this folder).
//
//   const { validator } = require("./schema");
//   const check = validator("emails.send");
//   check(body);          // throws, naming what is wrong, unless the body is valid
//
// Run directly, it checks JSON bodies read one a line from stdin and answers one line
// each, "valid" or "invalid: <reasons>":
//
//   node schema.js emails.send < bodies.jsonl
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const readline = require("node:readline");
const Ajv2020 = require("ajv/dist/2020");
const addFormats = require("ajv-formats");

// Where the committed schemas are; TASKQ_SCHEMA_DIR to read them from elsewhere.
const SCHEMA_DIR = process.env.TASKQ_SCHEMA_DIR || path.join(__dirname, "..", "schema");

function validator(task) {
  const schema = JSON.parse(fs.readFileSync(path.join(SCHEMA_DIR, `${task}.json`), "utf8"));
  // strict: false lets the schema's annotations (x-taskq-amqp) through.
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  addFormats(ajv);
  const validate = ajv.compile(schema);
  return (body) => {
    if (!validate(body)) {
      throw new Error(`not a valid ${task} message: ${ajv.errorsText(validate.errors)}`);
    }
    return body;
  };
}

async function main() {
  const [task] = process.argv.slice(2);
  if (!task) {
    console.error("usage: node schema.js TASK < bodies.jsonl");
    process.exit(64);
  }
  const check = validator(task);
  for await (const line of readline.createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    try {
      check(JSON.parse(line));
      console.log("valid");
    } catch (err) {
      console.log(`invalid: ${err.message}`);
    }
  }
}

module.exports = { validator };

if (require.main === module) {
  main().catch((err) => {
    console.error(err.message);
    process.exit(1);
  });
}
