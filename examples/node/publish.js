// Send an `emails.send` task to a taskq app from Node.js, by taskq's wire format
// (README, "Wire format"): a JSON body on the app's topic exchange, the task name as
// routing key, persistent, confirmed, mandatory. A Python worker runs it:
//
//   taskq worker examples.app:app          # declares the exchange and the task's queue
//   node publish.js 0b6e6c1a-8d1e-4b7e-9f2a-8c3b1f1f3c11 "Welcome!"
//   taskq status <the task id printed>
//
// Options (else the environment, else the defaults):
//   --url URL          TASKQ_BROKER_URL   amqp://guest:guest@127.0.0.1:5672/
//   --exchange NAME    TASKQ_EXCHANGE     taskq
//
// The body is checked against the task's JSON Schema (examples/schema/emails.send.json,
// from `taskq schema examples.app:app --task emails.send`) before it is sent.
"use strict";

const { randomUUID } = require("node:crypto");
const amqp = require("amqplib");
const { validator } = require("./schema");

const TASK = "emails.send";

function parse(argv) {
  const options = {
    url: process.env.TASKQ_BROKER_URL || "amqp://guest:guest@127.0.0.1:5672/",
    exchange: process.env.TASKQ_EXCHANGE || "taskq",
  };
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--url") options.url = argv[++i];
    else if (argv[i] === "--exchange") options.exchange = argv[++i];
    else rest.push(argv[i]);
  }
  if (rest.length !== 2) {
    console.error("usage: node publish.js [--url URL] [--exchange NAME] USER_ID SUBJECT");
    process.exit(64);
  }
  return { ...options, userId: rest[0], subject: rest[1] };
}

async function publish({ url, exchange, userId, subject }) {
  const taskId = randomUUID();
  const body = validator(TASK)({ id: taskId, task: TASK, args: [userId, subject], kwargs: {} });

  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    let returned = null; // RabbitMQ returns an unroutable mandatory message before its ack
    channel.on("return", (message) => {
      returned = message;
    });
    await new Promise((resolve, reject) => {
      channel.publish(
        exchange,
        TASK,
        Buffer.from(JSON.stringify(body)),
        {
          persistent: true, // delivery_mode 2
          contentType: "application/json",
          correlationId: taskId,
          messageId: randomUUID().replaceAll("-", ""),
          mandatory: true,
        },
        (err) => (err ? reject(err) : resolve()),
      );
    });
    if (returned !== null) {
      throw new Error(`no queue takes ${TASK} on exchange ${exchange}: start a worker first`);
    }
    await channel.close();
  } finally {
    await connection.close();
  }
  return taskId;
}

if (require.main === module) {
  publish(parse(process.argv.slice(2)))
    .then((taskId) => console.log(taskId))
    .catch((err) => {
      console.error(`publish.js: ${err.message}`);
      process.exit(1);
    });
}

module.exports = { publish };
