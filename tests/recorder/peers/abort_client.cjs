// A TypeScript SDK client that gives up on a long tool call with an AbortController.
//   node abort_client.cjs SDK_DIR URL   (SDK_DIR: node_modules/@modelcontextprotocol/sdk)
// The SDK sends notifications/cancelled with the abort reason; the session then goes on.
const path = require("path");

async function main() {
  const [sdk, url] = process.argv.slice(2);
  const { Client } = require(path.join(sdk, "dist/cjs/client/index.js"));
  const { StreamableHTTPClientTransport } = require(
    path.join(sdk, "dist/cjs/client/streamableHttp.js"));
  const client = new Client({ name: "abort-client", version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  const controller = new AbortController();
  setTimeout(() => controller.abort("user pressed stop"), 500);
  let outcome = "answered";
  try {
    await client.callTool(
      { name: "trigger-long-running-operation", arguments: { duration: 5, steps: 5 } },
      undefined, { signal: controller.signal });
  } catch (error) {
    outcome = (error && error.name) || String(error);
  }
  const sum = await client.callTool({ name: "get-sum", arguments: { a: 2, b: 3 } });
  await new Promise((resolve) => setTimeout(resolve, 500));
  console.log("OK", outcome, JSON.stringify(sum.content));
  await client.close();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
