"""A stdio MCP server (newline-delimited JSON-RPC) for tests and benchmarks: `note` writes its
`text` (and $GREETING, when set) to /workspace/from-mcp.txt and answers with its uid; `echo`
answers `pong`."""
import json, os, sys

TOOLS = [
    {"name": "note", "description": "Writes a note.", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}},
    {"name": "echo", "description": "Answers pong.", "inputSchema": {"type": "object"}},
]
for line in sys.stdin:
    req = json.loads(line)
    m, i = req.get("method"), req.get("id")
    if i is None:
        continue
    answer = {"jsonrpc": "2.0", "id": i}
    if m == "initialize":
        answer["result"] = {"protocolVersion": req["params"]["protocolVersion"], "capabilities": {"tools": {}}, "serverInfo": {"name": "fixture", "version": "1"}}
    elif m == "tools/list":
        answer["result"] = {"tools": TOOLS}
    elif m == "tools/call" and req["params"]["name"] == "note":
        with open("/workspace/from-mcp.txt", "w") as f:
            f.write(" ".join(filter(None, [req["params"]["arguments"]["text"], os.environ.get("GREETING")])))
        answer["result"] = {"content": [{"type": "text", "text": "noted by uid " + str(os.getuid())}]}
    elif m == "tools/call":
        answer["result"] = {"content": [{"type": "text", "text": "pong"}]}
    else:
        answer["error"] = {"code": -32601, "message": "no such method"}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
