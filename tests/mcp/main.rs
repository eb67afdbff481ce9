#[path = "../api/helpers.rs"]
mod helpers;

// Black-box tests of the MCP server: the official SDK's client (rmcp)
// talks to the real service over streamable HTTP (`/mcp`) and, through
// the real `countersign mcp` binary, over stdio, while people decide over
// the HTTP API as they would from anywhere.

mod support;

mod http;
mod stdio;
