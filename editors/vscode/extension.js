// Starts `cnnspec lsp` (pip install 'cnnspec[lsp]') for .cnn files.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace.getConfiguration("cnnspec").get("command", ["cnnspec", "lsp"]);
  client = new LanguageClient(
    "cnnspec",
    "cnnspec",
    { command, args },
    { documentSelector: [{ scheme: "file", language: "cnn" }] }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
