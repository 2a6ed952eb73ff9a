// The screens. Sign-in comes from the URL (?user=alice&name=Alice or
// ?token=JWT, &transports=polling), else from sessionStorage, else from the
// form; the conversation is in the fragment (#/chat/bob, #/room/ROOM_ID),
// because the gateway serves files and rewrites no path.
import { useEffect, useLayoutEffect, useRef, useState } from "react";
import { useChat } from "./useChat.js";

const SIGNIN_KEY = "chat.signin";

function readSignIn() {
  const q = new URLSearchParams(window.location.search);
  const transports = q.get("transports") ? q.get("transports").split(",").filter(Boolean) : undefined;
  if (q.get("user") || q.get("token")) {
    const s = q.get("token")
      ? { token: q.get("token"), transports }
      : { userId: q.get("user"), name: q.get("name") || q.get("user"), transports };
    sessionStorage.setItem(SIGNIN_KEY, JSON.stringify(s));
    return s;
  }
  try {
    const s = JSON.parse(sessionStorage.getItem(SIGNIN_KEY) || "null");
    if (s && (s.token || s.userId)) return transports ? { ...s, transports } : s;
  } catch {
    /* a bad entry is no sign-in */
  }
  return null;
}

function parseHash() {
  const h = window.location.hash.replace(/^#\/?/, "");
  const [kind, ...rest] = h.split("/");
  const id = decodeURIComponent(rest.join("/"));
  if (kind === "chat" && id) return { targetUserId: id };
  if (kind === "room" && id) return { roomId: id };
  return null;
}

function useHashRoute() {
  const [route, setRoute] = useState(parseHash);
  useEffect(() => {
    const on = () => setRoute(parseHash());
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return route;
}

export default function App() {
  const [signIn, setSignIn] = useState(readSignIn);
  if (!signIn) return <SignIn onDone={setSignIn} />;
  return (
    <Chat
      key={signIn.token || signIn.userId}
      signIn={signIn}
      onSignOut={() => {
        sessionStorage.removeItem(SIGNIN_KEY);
        window.history.replaceState(null, "", window.location.pathname + "#/");
        setSignIn(null);
      }}
    />
  );
}

function SignIn({ onDone }) {
  const [user, setUser] = useState("");
  const [name, setName] = useState("");
  const [token, setToken] = useState("");
  const [err, setErr] = useState("");
  const submit = (e) => {
    e.preventDefault();
    let s;
    if (token.trim()) s = { token: token.trim() };
    else if (/^[!-~]{1,128}$/.test(user.trim())) s = { userId: user.trim(), name: name.trim() || user.trim() };
    else {
      setErr("Enter a user id (1-128 printable characters, no spaces) or paste a token.");
      return;
    }
    sessionStorage.setItem(SIGNIN_KEY, JSON.stringify(s));
    onDone(s);
  };
  return (
    <main className="signin">
      <form onSubmit={submit}>
        <h1>chat</h1>
        <p className="hint">Development server (--auth insecure-dev): pick a user id and a name.</p>
        <label>
          User id
          <input data-testid="signin-user" value={user} onChange={(e) => setUser(e.target.value)} autoComplete="username" />
        </label>
        <label>
          Name
          <input data-testid="signin-name" value={name} onChange={(e) => setName(e.target.value)} />
        </label>
        <p className="hint">Or, with JWT: paste a token minted by your backend.</p>
        <label>
          Token
          <textarea data-testid="signin-token" value={token} onChange={(e) => setToken(e.target.value)} rows={3} />
        </label>
        {err && <p className="error">{err}</p>}
        <button data-testid="signin-submit" type="submit">
          Sign in
        </button>
      </form>
    </main>
  );
}

const CONN_LABEL = {
  connecting: "connecting…",
  connected: "connected",
  reconnecting: "reconnecting…",
  offline: "offline",
};

function Chat({ signIn, onSignOut }) {
  const chat = useChat(signIn.token ? { token: signIn.token } : { userId: signIn.userId, name: signIn.name }, {
    transports: signIn.transports,
  });
  const route = useHashRoute();
  const routeKey = route ? route.roomId || `u:${route.targetUserId}` : "";

  useEffect(() => {
    if (route) chat.openChat(route);
    else chat.closeRoom();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [routeKey]);

  const { conn } = chat;
  if (!chat.me) {
    return (
      <main className="signin">
        <form onSubmit={(e) => { e.preventDefault(); onSignOut(); }}>
          <p className="error">This token is not a JWT that names a user (no readable sub claim).</p>
          <button type="submit">Sign in again</button>
        </form>
      </main>
    );
  }
  return (
    <div className={`app ${route ? "has-chat" : ""}`}>
      <header className="topbar">
        <span className="brand">chat</span>
        <span className="who">
          <span data-testid="me">{chat.me}</span>
        </span>
        <span
          className={`conn conn-${conn.state}`}
          data-testid="conn-status"
          data-state={conn.state}
          data-recovered={conn.recovered ? "true" : "false"}
        >
          {CONN_LABEL[conn.state]}
          {conn.state === "connected" && conn.recovered ? " · recovered" : ""}
        </span>
        <button className="link" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      {chat.error && (
        <div className="banner" role="status" onClick={chat.clearError}>
          {chat.error} <span className="dismiss">✕</span>
        </div>
      )}
      <div className="panes">
        <aside className="side">
          <NewDm />
          <NewGroup chat={chat} />
          <ConvList chat={chat} route={route} />
        </aside>
        <section className="main">
          {route ? <ChatView key={routeKey} chat={chat} route={route} /> : <p className="empty">Pick a conversation.</p>}
        </section>
      </div>
    </div>
  );
}

function NewDm() {
  const [user, setUser] = useState("");
  const open = (e) => {
    e.preventDefault();
    const u = user.trim();
    if (!u) return;
    window.location.hash = `#/chat/${encodeURIComponent(u)}`;
    setUser("");
  };
  return (
    <form className="row" onSubmit={open}>
      <input data-testid="new-dm-user" placeholder="user id" value={user} onChange={(e) => setUser(e.target.value)} />
      <button data-testid="new-dm-open" type="submit">
        Chat
      </button>
    </form>
  );
}

function NewGroup({ chat }) {
  const [name, setName] = useState("");
  const [members, setMembers] = useState("");
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState("");
  const create = async (e) => {
    e.preventDefault();
    if (!name.trim()) return;
    setBusy(true);
    setErr("");
    try {
      const ids = members
        .split(",")
        .map((x) => x.trim())
        .filter(Boolean);
      const g = await chat.api("POST", "/api/rooms", { name: name.trim(), members: ids });
      setName("");
      setMembers("");
      await chat.refreshRooms();
      window.location.hash = `#/room/${encodeURIComponent(g.roomId)}`;
    } catch (x) {
      setErr(x.message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form className="newgroup" onSubmit={create}>
      <input data-testid="new-group-name" placeholder="new group name" value={name} onChange={(e) => setName(e.target.value)} />
      <div className="row">
        <input
          data-testid="new-group-members"
          placeholder="members: bob, carol"
          value={members}
          onChange={(e) => setMembers(e.target.value)}
        />
        <button data-testid="new-group-create" type="submit" disabled={busy}>
          Create
        </button>
      </div>
      {err && <p className="error">{err}</p>}
    </form>
  );
}

function peerOf(room, me) {
  return room.type === "dm" ? room.members.find((u) => u !== me) || me : "";
}

function ConvList({ chat, route }) {
  return (
    <ul className="convs" data-testid="conv-list">
      {chat.rooms.map((r) => {
        const peer = peerOf(r, chat.me);
        const active = route && (route.roomId === r.roomId || (peer && route.targetUserId === peer));
        const href = peer ? `#/chat/${encodeURIComponent(peer)}` : `#/room/${encodeURIComponent(r.roomId)}`;
        return (
          <li
            key={r.roomId}
            className={`conv ${active ? "active" : ""}`}
            data-testid="conv-item"
            data-room-id={r.roomId}
            data-peer={peer}
            data-kind={r.type === "dm" ? "direct" : "group"}
          >
            <a href={href}>
              {peer ? (
                <span className="dot" data-testid="presence-dot" data-online={chat.presence[peer] ? "true" : "false"} />
              ) : (
                <span className="dot group">#</span>
              )}
              <span className="conv-body">
                <span className="conv-name" data-testid="conv-name">
                  {peer || r.name}
                </span>
                <span className="conv-last" data-testid="conv-last">
                  {r.lastMessage ? r.lastMessage.text : ""}
                </span>
              </span>
              <span className={`unread ${r.unreadCount ? "" : "zero"}`} data-testid="conv-unread">
                {String(r.unreadCount || 0)}
              </span>
            </a>
          </li>
        );
      })}
      {chat.roomsError && <li className="error">Conversations: {chat.roomsError}</li>}
      {chat.rooms.length === 0 && !chat.roomsError && <li className="empty">No conversations yet.</li>}
    </ul>
  );
}

function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

const TICK = { pending: "🕓", sent: "✓", delivered: "✓✓", seen: "✓✓" };

function ChatView({ chat, route }) {
  // the direct room's id once joinChat answered (or the list knew it)
  const opened = chat.open && chat.open.targetUserId === route.targetUserId ? chat.open.roomId : "";
  const roomId = route.roomId || opened || "";
  const summary = chat.rooms.find((r) => r.roomId === roomId);
  const peer = route.targetUserId || (summary && summary.type === "dm" ? peerOf(summary, chat.me) : "");
  const isGroup = !peer && (!summary || summary.type === "group");
  const view = chat.roomView(roomId, route.targetUserId);
  const listRef = useRef(null);
  const atBottom = useRef(true);
  const lastCount = useRef(0);
  const olderAnchor = useRef(null);

  const total = view.messages.length + view.pending.length;
  useLayoutEffect(() => {
    const el = listRef.current;
    if (!el) return;
    if (olderAnchor.current != null) {
      // keep the view where it was after older messages went on top
      el.scrollTop = el.scrollHeight - olderAnchor.current;
      olderAnchor.current = null;
    } else if (total !== lastCount.current && atBottom.current) {
      el.scrollTop = el.scrollHeight;
    }
    lastCount.current = total;
  });

  const loadOlder = () => {
    const el = listRef.current;
    if (el) olderAnchor.current = el.scrollHeight - el.scrollTop;
    chat.loadOlder(roomId);
  };

  return (
    <div className="chat" data-testid="chat-view" data-room-id={roomId}>
      <div className="chat-head">
        <a className="back" href="#/">
          ‹
        </a>
        <h2 data-testid="chat-title">{peer || (summary && summary.name) || roomId}</h2>
        {peer && (
          <span className="peer-presence" data-testid="peer-presence" data-online={chat.presence[peer] ? "true" : "false"}>
            {chat.presence[peer] ? "online" : "offline"}
          </span>
        )}
      </div>
      {isGroup && summary && <GroupMembers chat={chat} room={summary} />}
      <div
        className="msgs"
        data-testid="msg-list"
        ref={listRef}
        onScroll={(e) => {
          const el = e.currentTarget;
          atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
        }}
      >
        {view.hasOlder && (
          <button className="older" data-testid="load-older" onClick={loadOlder}>
            Load older messages
          </button>
        )}
        {view.messages.map((m) => (
          <Message key={m.id} chat={chat} roomId={roomId} m={m} isGroup={isGroup} />
        ))}
        {view.pending.map((p) => (
          <div
            key={p.clientMsgId}
            className="msg mine"
            data-testid="msg"
            data-id=""
            data-seq=""
            data-client-msg-id={p.clientMsgId}
            data-mine="true"
          >
            <span className="msg-text" data-testid="msg-text">
              {p.text}
            </span>
            <span className="meta">
              <span className="ticks pending" data-testid="msg-ticks" data-status="pending" title="not sent yet">
                {TICK.pending}
              </span>
            </span>
          </div>
        ))}
      </div>
      {view.typing && (
        <div className="typing" data-testid="typing-indicator">
          {view.typing.firstName || view.typing.userId} is typing…
        </div>
      )}
      <Composer chat={chat} target={roomId ? { roomId } : { targetUserId: route.targetUserId }} />
    </div>
  );
}

function Message({ chat, roomId, m, isGroup }) {
  const mine = m.userId === chat.me;
  const [receipts, setReceipts] = useState(null);
  const status = mine ? chat.statusOf(roomId, m) : null;
  const seen = mine && isGroup ? chat.seenBy(roomId, m) : null;
  const seenKey = seen ? `${seen.n}/${seen.of}/${status}` : "";

  const showReceipts = async () => {
    if (receipts) {
      setReceipts(null);
      return;
    }
    try {
      setReceipts(await chat.receipts(roomId, m.seq));
    } catch (e) {
      setReceipts({ error: e.message });
    }
  };
  // while the receipts are shown, follow the ticks
  useEffect(() => {
    if (!receipts || receipts.error) return;
    chat.receipts(roomId, m.seq).then(setReceipts, () => {});
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [seenKey]);

  return (
    <div
      className={`msg ${mine ? "mine" : "theirs"}`}
      data-testid="msg"
      data-id={m.id}
      data-seq={m.seq}
      data-client-msg-id={m.clientMsgId || ""}
      data-mine={mine ? "true" : "false"}
    >
      {!mine && isGroup && <span className="author">{m.firstName || m.userId}</span>}
      <span className="msg-text" data-testid="msg-text">
        {m.text}
      </span>
      <span className="meta">
        <time dateTime={m.createdAt}>{fmtTime(m.createdAt)}</time>
        {mine && (
          <span className={`ticks ${status}`} data-testid="msg-ticks" data-status={status} title={status}>
            {TICK[status]}
          </span>
        )}
      </span>
      {seen && (
        <button className="seenby link" data-testid="msg-seen-by" onClick={showReceipts}>
          {`seen by ${seen.n} of ${seen.of}`}
        </button>
      )}
      {receipts && (
        <ul className="receipts">
          {receipts.error && <li className="error">{receipts.error}</li>}
          {!receipts.error &&
            receipts.map((r) => (
              <li key={r.userId} data-testid="receipt-row" data-user-id={r.userId} data-status={r.status}>
                <span>{r.userId}</span> <span className={`ticks ${r.status}`}>{r.status}</span>{" "}
                <time>{fmtTime(r.seenAt || r.deliveredAt)}</time>
              </li>
            ))}
        </ul>
      )}
    </div>
  );
}

function GroupMembers({ chat, room }) {
  const [user, setUser] = useState("");
  const [err, setErr] = useState("");
  const call = async (method, path, body) => {
    setErr("");
    try {
      await chat.api(method, path, body);
      await chat.refreshRooms();
      return true;
    } catch (e) {
      setErr(e.message);
      return false;
    }
  };
  const base = `/api/rooms/${encodeURIComponent(room.roomId)}/members`;
  return (
    <details className="members" open>
      <summary>{room.members.length} members</summary>
      <ul>
        {room.members.map((u) => (
          <li key={u} data-testid="group-member" data-user-id={u}>
            <span className={`dot ${chat.presence[u] ? "on" : ""}`} />
            {u}
            {u === chat.me ? " (you)" : ""}
            <button
              className="link"
              data-testid="group-remove"
              onClick={async () => {
                const ok = await call("DELETE", `${base}/${encodeURIComponent(u)}`);
                // who left the group has nothing more to see in it
                if (ok && u === chat.me) window.location.hash = "#/";
              }}
              title={u === chat.me ? "leave the group" : `remove ${u}`}
            >
              {u === chat.me ? "leave" : "remove"}
            </button>
          </li>
        ))}
      </ul>
      <form
        className="row"
        onSubmit={(e) => {
          e.preventDefault();
          if (!user.trim()) return;
          call("POST", base, { userId: user.trim() });
          setUser("");
        }}
      >
        <input data-testid="group-add-user" placeholder="add user id" value={user} onChange={(e) => setUser(e.target.value)} />
        <button data-testid="group-add" type="submit">
          Add
        </button>
      </form>
      {err && <p className="error">{err}</p>}
    </details>
  );
}

function Composer({ chat, target }) {
  const [text, setText] = useState("");
  const send = () => {
    if (!text.trim()) return;
    chat.sendMessage({ ...target, text });
    setText("");
  };
  return (
    <form
      className="composer"
      onSubmit={(e) => {
        e.preventDefault();
        send();
      }}
    >
      <input
        data-testid="composer-input"
        placeholder="Message"
        value={text}
        autoComplete="off"
        onChange={(e) => {
          setText(e.target.value);
          if (e.target.value) chat.typing(target);
        }}
      />
      <button data-testid="composer-send" type="submit">
        Send
      </button>
    </form>
  );
}
