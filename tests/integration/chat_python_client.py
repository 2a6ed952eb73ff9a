#!/usr/bin/env python3
"""A chat user on python-socketio (Debian's python3-socketio), driven by
chat-python.test.mjs through stdin/stdout.

    chat_python_client.py --url URL --token JWT --target USER_ID
                          [--transports polling,websocket]

Connects with {"token": JWT} in the CONNECT auth payload, emits joinChat
{targetUserId} and then prints one JSON object per line on stdout:
  {"event": "connected", "transport": "websocket", "roomId": "..."}
  {"event": "messageReceived", "data": {...}}      for every message
  {"event": "ack", "ack": {...}, "ref": ...}         for every send
  {"event": "connect_error", "data": {...}}         when the server refuses
  {"event": "error", "message": "..."}               and exits 1 on failure
Reads commands, one JSON object per line, on stdin:
  {"cmd": "send", "text": "...", "ref": ...}   sendMessage {targetUserId, text}
  {"cmd": "quit"}                                disconnect and exit 0
End of input also quits.
"""

import argparse
import json
import sys
import threading

import socketio

out_lock = threading.Lock()


def emit(obj):
    with out_lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--transports", default="polling,websocket")
    ap.add_argument("--timeout", type=float, default=5.0)
    args = ap.parse_args()

    sio = socketio.Client(reconnection=False)

    @sio.on("connect_error")
    def on_connect_error(data):
        emit({"event": "connect_error", "data": data})

    @sio.on("messageReceived")
    def on_message(data):
        emit({"event": "messageReceived", "data": data})

    try:
        sio.connect(
            args.url,
            auth={"token": args.token},
            transports=args.transports.split(","),
            wait_timeout=args.timeout,
        )
        joined = sio.call("joinChat", {"targetUserId": args.target}, timeout=args.timeout)
    except Exception as exc:  # connect_error, timeout: report and stop
        emit({"event": "error", "message": "%s: %s" % (type(exc).__name__, exc)})
        sio.disconnect()
        return 1
    emit({"event": "connected", "transport": sio.transport(), "roomId": (joined or {}).get("roomId")})

    status = 0
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        cmd = json.loads(line)
        if cmd.get("cmd") == "quit":
            break
        if cmd.get("cmd") == "send":
            try:
                ack = sio.call(
                    "sendMessage",
                    {"targetUserId": args.target, "text": cmd["text"]},
                    timeout=args.timeout,
                )
                emit({"event": "ack", "ack": ack, "ref": cmd.get("ref"), "transport": sio.transport()})
            except Exception as exc:
                emit({"event": "error", "message": "%s: %s" % (type(exc).__name__, exc)})
                status = 1
                break
    sio.disconnect()
    return status


if __name__ == "__main__":
    sys.exit(main())
