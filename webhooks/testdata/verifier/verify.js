// Reads {secret, payload, headers} cases as JSON on stdin and prints one line per case:
// "ok" or "fail: <reason>", as the Standard Webhooks library judges it.
const { Webhook } = require("standardwebhooks");
let input = "";
process.stdin.on("data", (c) => (input += c));
process.stdin.on("end", () => {
  for (const c of JSON.parse(input)) {
    try {
      new Webhook(c.secret).verify(c.payload, c.headers);
      console.log("ok");
    } catch (e) {
      console.log("fail: " + e.message);
    }
  }
});
