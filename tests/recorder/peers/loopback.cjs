// Preload for third-party Node MCP servers in tests: whatever port they are given, listen on
// 127.0.0.1 only (they bind every interface by default), and report the real port on stderr.
const net = require("net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" || typeof args[0] === "string") {
    const callback = args.find((a) => typeof a === "function");
    this.once("listening", () => process.stderr.write(`SSETAP_PORT ${this.address().port}\n`));
    return listen.call(this, Number(args[0]), "127.0.0.1", callback);
  }
  return listen.apply(this, args);
};
