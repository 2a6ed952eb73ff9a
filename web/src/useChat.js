// useChat: the socket side of the chat, as one React hook you can copy into
// your own app. It needs only `react` and `socket.io-client`.
//
//   const chat = useChat({ userId: "alice", name: "Alice" });   // insecure-dev
//   const chat = useChat({ token });                             // JWT
//   chat.conn            { state: connecting|connected|reconnecting|offline, recovered }
//   chat.rooms           GET /api/rooms, kept live (messages, presence, groups)
//   chat.roomView(id)    { messages (seq order, each id once), pending, nextBefore }
//   chat.openChat(peer) / chat.openRoom(id) / chat.closeRoom()
//   chat.sendMessage({ roomId | targetUserId, text })  queued while offline
//   chat.loadOlder(id), chat.typing(id), chat.receipts(id, seq), chat.api
//
// Promises it keeps (see proto/PROTOCOL.md):
// - every message carries a clientMsgId; a message written while the socket
//   is down stays in `pending` and is emitted when it connects again, and
//   re-emitted after a drop that ate its ack: the server answers a retry of
//   the same clientMsgId with the original message, so nothing is doubled;
// - messages are kept by server id (history, live, sync and recovery replay
//   overlap; each id is shown once) and ordered by the room's seq;
// - ticks come from the members' watermarks (`messageStatus`: member U got to
//   STATUS up to SEQ) with the history's and the ack's status as a floor;
// - after a reconnect the open room is opened again (the server forgets it),
//   and without recovery the history and the room list are read again.
import { useCallback, useEffect, useReducer, useRef } from "react";
import { io } from "socket.io-client";

const RANK = { sent: 1, delivered: 2, seen: 3 };
const NAMES = ["pending", "sent", "delivered", "seen"];
const PAGE = 30;
const TYPING_MS = 3000;

// The HTTP API of chat-storage, same origin. Throws Error(reason) on failure.
export function makeApi(ident, base = "") {
  const headers = { "Content-Type": "application/json" };
  if (ident.token) headers.Authorization = `Bearer ${ident.token}`;
  else {
    headers["X-User-Id"] = ident.userId;
    if (ident.name) headers["X-User-Name"] = ident.name;
  }
  return async function api(method, path, body) {
    const res = await fetch(base + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    const text = await res.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = { error: text };
      }
    }
    if (!res.ok) throw new Error((data && data.error) || `HTTP ${res.status}`);
    return data;
  };
}

// The user id a JWT names (its `sub`), without verifying it: the server does.
export function tokenUser(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
    return { userId: String(claims.sub || ""), name: String(claims.name || claims.sub || "") };
  } catch {
    return { userId: "", name: "" };
  }
}

function newClientMsgId() {
  const r = globalThis.crypto && crypto.randomUUID ? crypto.randomUUID() : Math.random().toString(36).slice(2);
  return `c-${r}`;
}

function emptyRoom() {
  return { byId: {}, nextBefore: undefined, loaded: false, wm: {}, floor: {} };
}

// All state lives in one object mutated by the event handlers below and
// published to React by a version bump: socket events arrive in bursts
// (sync, recovery), and one object keeps the dedup and the ordering in one
// place.
function initialStore() {
  return {
    conn: { state: "connecting", recovered: false },
    rooms: [], // RoomSummary[] from GET /api/rooms, newest first
    roomsError: "",
    presence: {}, // userId -> bool
    room: {}, // roomId -> { byId, nextBefore, loaded, wm: {user: {delivered, seen}}, floor: {id: rank} }
    pending: [], // { clientMsgId, roomId?, targetUserId?, text, inFlight }
    typing: {}, // roomId -> { userId, firstName, until }
    open: null, // { roomId?, targetUserId? }
    dmRoom: {}, // peer -> roomId
    error: "",
  };
}

export function useChat(ident, options = {}) {
  const me = ident.token ? tokenUser(ident.token).userId : ident.userId;
  const myName = ident.token ? tokenUser(ident.token).name : ident.name || ident.userId;
  const storeRef = useRef(null);
  const pendingKey = `chat.pending.${me}`;
  if (storeRef.current === null) {
    storeRef.current = initialStore();
    // messages queued before a reload are still to be sent (same clientMsgId)
    try {
      const saved = JSON.parse(sessionStorage.getItem(pendingKey) || "[]");
      if (Array.isArray(saved)) storeRef.current.pending = saved.map((p) => ({ ...p, inFlight: false }));
    } catch {
      /* nothing saved */
    }
  }
  const socketRef = useRef(null);
  const apiRef = useRef(null);
  const [, bump] = useReducer((x) => x + 1, 0);
  const s = storeRef.current;
  const transports = options.transports;
  // the queue outlives a reload of the tab (sessionStorage)
  useEffect(() => {
    const keep = s.pending.map((p) => ({ clientMsgId: p.clientMsgId, roomId: p.roomId, targetUserId: p.targetUserId, text: p.text }));
    if (keep.length) sessionStorage.setItem(pendingKey, JSON.stringify(keep));
    else sessionStorage.removeItem(pendingKey);
  });

  // identity fields for insecure-dev; ignored by the server under JWT
  const idFields = useCallback(() => (ident.token ? {} : { userId: me, firstName: myName }), [ident.token, me, myName]);

  const roomOf = (id) => (s.room[id] ||= emptyRoom());

  const addMessage = useCallback(
    (m) => {
      if (!m || !m.id || !m.roomId) return;
      const r = roomOf(m.roomId);
      const old = r.byId[m.id];
      r.byId[m.id] = old ? { ...old, ...m } : m;
      if (m.userId === me && m.status && RANK[m.status]) r.floor[m.id] = Math.max(r.floor[m.id] || 0, RANK[m.status]);
      if (m.clientMsgId && m.userId === me) s.pending = s.pending.filter((p) => p.clientMsgId !== m.clientMsgId);
    },
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [me],
  );

  // one GET /api/rooms at a time: a burst of events (sync, several new
  // rooms) asks again once, after the one in flight
  const roomsLoad = useRef({ busy: null, again: false });
  const refreshRooms = useCallback(() => {
    const st = roomsLoad.current;
    if (st.busy) {
      st.again = true;
      return st.busy;
    }
    st.busy = (async () => {
      do {
        st.again = false;
        await fetchRooms();
      } while (st.again);
      st.busy = null;
    })();
    return st.busy;
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);
  const fetchRooms = async () => {
    try {
      const list = await apiRef.current("GET", "/api/rooms?limit=200");
      // a message that arrived while the list was computed is not in it:
      // what this client already holds beyond the list's lastMessage counts
      s.rooms = list.map((r) => {
        // the open room is seen (the list may predate the join)
        if (s.open && s.open.roomId === r.roomId) r = { ...r, unreadCount: 0 };
        const held = s.room[r.roomId];
        if (!held) return r;
        const last = r.lastMessage ? r.lastMessage.seq : 0;
        const later = Object.values(held.byId).filter((m) => m.seq > last);
        if (later.length === 0) return r;
        const newest = later.reduce((x, y) => (y.seq > x.seq ? y : x));
        const isOpen = s.open && s.open.roomId === r.roomId;
        const unread = isOpen ? 0 : r.unreadCount + later.filter((m) => m.userId !== me).length;
        return { ...r, lastMessage: newest, unreadCount: unread };
      });
      s.roomsError = "";
      for (const r of list) {
        if (r.type === "dm") {
          const peer = r.members.find((u) => u !== me) || me;
          s.dmRoom[peer] = r.roomId;
        }
      }
      bump();
      // presence of direct peers not known yet
      const sock = socketRef.current;
      if (sock && sock.connected) {
        for (const r of list) {
          if (r.type !== "dm") continue;
          const peer = r.members.find((u) => u !== me);
          if (!peer || peer in s.presence) continue;
          sock.emit("getOnline", { ...idFields(), targetUserId: peer }, (ack) => {
            if (ack && Array.isArray(ack.online)) {
              s.presence[peer] = ack.online.includes(peer);
              bump();
            }
          });
        }
      }
    } catch (e) {
      s.roomsError = e.message;
      bump();
    }
  };

  const loadHistory = useCallback(
    async (roomId, older) => {
      const r = roomOf(roomId);
      if (older && r.nextBefore == null) return;
      try {
        let page;
        // an older page the sync already brought whole adds nothing: go on
        // to the next, so "load older" always shows something older
        for (;;) {
          const q = older ? `&before=${r.nextBefore}` : "";
          page = await apiRef.current("GET", `/api/rooms/${encodeURIComponent(roomId)}/messages?limit=${PAGE}${q}`);
          const before = Object.keys(r.byId).length;
          for (const m of page.messages) addMessage(m);
          if (older || !r.loaded) r.nextBefore = page.nextBefore;
          if (!older || Object.keys(r.byId).length > before || r.nextBefore == null) break;
        }
        r.loaded = true;
        bump();
        // the members' watermarks (for "seen by N of M", and statuses that
        // moved while this client was away) from my newest message's receipts:
        // a member who saw it saw every earlier one
        const mine = !older && page.messages.find((m) => m.userId === me);
        if (mine) await receipts(roomId, mine.seq).catch(() => {});
      } catch (e) {
        s.error = `history: ${e.message}`;
        bump();
      }
    },
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [addMessage],
  );

  // emit every queued message that is not on its way; called on connect and
  // on each new message. A retry of the same clientMsgId is answered with the
  // original, so re-emitting after a lost ack never stores a duplicate.
  const flush = useCallback(() => {
    const sock = socketRef.current;
    if (!sock || !sock.connected) return;
    for (const p of s.pending) {
      if (p.inFlight) continue;
      if (!p.roomId && p.targetUserId && s.dmRoom[p.targetUserId]) p.roomId = s.dmRoom[p.targetUserId];
      p.inFlight = true;
      const target = p.roomId ? { roomId: p.roomId } : { targetUserId: p.targetUserId };
      sock.emit("sendMessage", { ...idFields(), ...target, text: p.text, clientMsgId: p.clientMsgId }, (ack) => {
        p.inFlight = false;
        if (ack && ack.id) {
          addMessage({
            id: ack.id,
            seq: ack.seq,
            roomId: ack.roomId,
            userId: me,
            firstName: myName,
            lastName: null,
            text: p.text,
            createdAt: ack.createdAt,
            clientMsgId: p.clientMsgId,
            status: ack.status || "sent",
          });
        } else if (ack && ack.error) {
          if (ack.error === "unavailable" || ack.error === "rate limited") {
            // nothing was stored: the same clientMsgId again, a little later
            setTimeout(() => flushRef.current(), 1000);
          } else if (ack.error !== "token expired") {
            // refused for good (not a member, too long...): drop it, say why
            s.pending = s.pending.filter((x) => x !== p);
          }
          s.error = `send: ${ack.error}`;
        }
        bump();
      });
    }
  }, [idFields, addMessage, me, myName, s]);
  const flushRef = useRef(flush);
  flushRef.current = flush;

  // (re)open the room on this socket: the server marks it seen and keeps it
  // open (later messages arrive seen) until leaveRoom or disconnect
  const emitOpen = useCallback(() => {
    const sock = socketRef.current;
    const o = s.open;
    if (!sock || !sock.connected || !o) return;
    const done = (ack) => {
      if (s.open !== o) return;
      if (ack && ack.roomId) {
        o.roomId = ack.roomId;
        if (o.targetUserId) s.dmRoom[o.targetUserId] = ack.roomId;
        s.rooms = s.rooms.map((x) => (x.roomId === ack.roomId ? { ...x, unreadCount: 0 } : x));
        loadHistory(ack.roomId, false);
        if (!s.rooms.some((x) => x.roomId === ack.roomId)) refreshRooms();
        flush();
        if (!o.targetUserId) {
          // who of the room is online (the socket is in it now)
          sock.emit("getOnline", { ...idFields(), roomId: ack.roomId }, (on) => {
            if (!on || !Array.isArray(on.online)) return;
            const summary = s.rooms.find((x) => x.roomId === ack.roomId);
            for (const u of summary ? summary.members : on.online) s.presence[u] = on.online.includes(u);
            bump();
          });
        }
      } else if (ack && ack.error) {
        s.error = `open: ${ack.error}`;
      }
      bump();
    };
    if (o.targetUserId) sock.emit("joinChat", { ...idFields(), targetUserId: o.targetUserId }, done);
    else sock.emit("joinRoom", { ...idFields(), roomId: o.roomId }, done);
    if (o.targetUserId) {
      sock.emit("getOnline", { ...idFields(), targetUserId: o.targetUserId }, (ack) => {
        if (ack && Array.isArray(ack.online)) {
          s.presence[o.targetUserId] = ack.online.includes(o.targetUserId);
          bump();
        }
      });
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [idFields, loadHistory, refreshRooms, flush]);

  useEffect(() => {
    if (!me) return undefined;
    apiRef.current = makeApi(ident);
    const opts = { auth: ident.token ? { token: ident.token } : { userId: me, firstName: myName } };
    if (transports) opts.transports = transports;
    const sock = io(options.url || "", opts);
    socketRef.current = sock;
    let everConnected = false;
    // the list at once, not after the connect (which may never come: then
    // the list says why, e.g. unauthorized); again on connect, for presence
    refreshRooms();

    const setConn = (state, recovered) => {
      s.conn = { state, recovered: recovered ?? s.conn.recovered };
      bump();
    };
    sock.on("connect", () => {
      const recovered = everConnected && sock.recovered;
      everConnected = true;
      s.presence[me] = true;
      if (s.error.startsWith("connect:")) s.error = "";
      setConn("connected", recovered);
      for (const p of s.pending) p.inFlight = false;
      if (!recovered) refreshRooms();
      // statuses are not replayed by recovery: read the newest page again
      // (its statuses, and the receipts of my newest message)
      for (const id of Object.keys(s.room)) if (s.room[id].loaded) loadHistory(id, false);
      emitOpen();
      flush();
    });
    sock.on("disconnect", (reason) => {
      // an ack lost with the transport will never come: retry on connect
      for (const p of s.pending) p.inFlight = false;
      if (reason === "io client disconnect") setConn("offline", false);
      else if (reason === "io server disconnect") {
        setConn("offline", false);
        s.error = "disconnected by the server (token expired?)";
      } else setConn(navigator.onLine === false ? "offline" : "reconnecting", false);
    });
    sock.on("connect_error", (err) => {
      s.error = `connect: ${err.message}`;
      const retrying = everConnected ? "reconnecting" : "connecting";
      setConn(navigator.onLine === false ? "offline" : sock.active ? retrying : "offline", false);
    });
    const onOffline = () => {
      if (!sock.connected) setConn("offline");
    };
    const onOnline = () => {
      if (!sock.connected) setConn("reconnecting");
    };
    window.addEventListener("offline", onOffline);
    window.addEventListener("online", onOnline);

    sock.on("messageReceived", (m) => {
      if (!m || !m.roomId) return;
      addMessage(m);
      const t = s.typing[m.roomId];
      if (t && t.userId === m.userId) delete s.typing[m.roomId];
      const openId = s.open && s.open.roomId;
      let known = false;
      s.rooms = s.rooms.map((r) => {
        if (r.roomId !== m.roomId) return r;
        known = true;
        // the list's unreadCount already counts everything up to its
        // lastMessage: only a later message adds one (sync and recovery
        // replay what the list may have counted)
        const newer = !r.lastMessage || r.lastMessage.seq < m.seq;
        const unread = newer && m.userId !== me && openId !== m.roomId ? r.unreadCount + 1 : r.unreadCount;
        return { ...r, lastMessage: newer ? m : r.lastMessage, unreadCount: unread };
      });
      if (known) {
        // most recent activity first
        const i = s.rooms.findIndex((r) => r.roomId === m.roomId);
        if (i > 0) s.rooms = [s.rooms[i], ...s.rooms.slice(0, i), ...s.rooms.slice(i + 1)];
      } else refreshRooms();
      bump();
    });
    sock.on("messageStatus", (st) => {
      if (!st || !st.roomId) return;
      const r = roomOf(st.roomId);
      const w = (r.wm[st.userId] ||= { delivered: 0, seen: 0 });
      if (st.status === "seen") w.seen = Math.max(w.seen, st.seq);
      if (st.status === "seen" || st.status === "delivered") w.delivered = Math.max(w.delivered, st.seq);
      const msg = Object.values(r.byId).find((m) => m.seq === st.seq);
      if (msg && RANK[st.aggregate]) r.floor[msg.id] = Math.max(r.floor[msg.id] || 0, RANK[st.aggregate]);
      r.statusVersion = (r.statusVersion || 0) + 1;
      bump();
    });
    sock.on("showTyping", (t) => {
      if (!t || !t.roomId || t.userId === me) return;
      s.typing[t.roomId] = { userId: t.userId, firstName: t.firstName, until: Date.now() + TYPING_MS };
      bump();
      setTimeout(() => {
        const cur = s.typing[t.roomId];
        if (cur && cur.until <= Date.now()) {
          delete s.typing[t.roomId];
          bump();
        }
      }, TYPING_MS + 50);
    });
    sock.on("presence", (p) => {
      if (!p || !p.userId) return;
      s.presence[p.userId] = !!p.online;
      bump();
    });
    sock.on("roomAdded", () => refreshRooms());
    sock.on("roomRemoved", (r) => {
      if (r && r.roomId) s.rooms = s.rooms.filter((x) => x.roomId !== r.roomId);
      bump();
    });
    sock.on("chatError", (e) => {
      s.error = e && e.error ? `${e.event || "server"}: ${e.error}` : "error";
      bump();
    });

    return () => {
      window.removeEventListener("offline", onOffline);
      window.removeEventListener("online", onOnline);
      sock.removeAllListeners();
      sock.disconnect();
      socketRef.current = null;
    };
    // one socket per identity and transport choice
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [me, ident.token, transports && transports.join(",")]);

  const openChat = useCallback(
    (target) => {
      const sock = socketRef.current;
      const prev = s.open;
      if (prev && sock && sock.connected && prev.roomId && prev.roomId !== target.roomId) {
        // later messages of the room we leave arrive delivered, not seen
        sock.emit("leaveRoom", { ...idFields(), roomId: prev.roomId });
      }
      const roomId = target.roomId || (target.targetUserId && s.dmRoom[target.targetUserId]) || undefined;
      s.open = { roomId, targetUserId: target.targetUserId };
      if (roomId) {
        s.rooms = s.rooms.map((x) => (x.roomId === roomId ? { ...x, unreadCount: 0 } : x));
        if (!roomOf(roomId).loaded) loadHistory(roomId, false);
      }
      emitOpen();
      bump();
    },
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [idFields, emitOpen, loadHistory],
  );

  const closeRoom = useCallback(() => {
    const sock = socketRef.current;
    const prev = s.open;
    if (prev && prev.roomId && sock && sock.connected) sock.emit("leaveRoom", { ...idFields(), roomId: prev.roomId });
    s.open = null;
    bump();
  }, [idFields, s]);

  const sendMessage = useCallback(
    ({ roomId, targetUserId, text }) => {
      if (!text || !text.trim()) return;
      s.pending = [...s.pending, { clientMsgId: newClientMsgId(), roomId, targetUserId, text, inFlight: false }];
      bump();
      flush();
    },
    [flush, s],
  );

  const typingSent = useRef(0);
  const typing = useCallback(
    (target) => {
      const sock = socketRef.current;
      if (!sock || !sock.connected || Date.now() - typingSent.current < 1500) return;
      typingSent.current = Date.now();
      sock.emit("typing", { ...idFields(), ...target }, () => {});
    },
    [idFields],
  );

  const markSeen = useCallback(
    (roomId, seq) => {
      const sock = socketRef.current;
      if (sock && sock.connected) sock.emit("markSeen", { ...idFields(), roomId, ...(seq ? { seq } : {}) }, () => {});
    },
    [idFields],
  );

  async function receipts(roomId, seq) {
    const res = await apiRef.current("GET", `/api/rooms/${encodeURIComponent(roomId)}/messages/${seq}/receipts`);
    // receipts raise the members' watermarks too
    const r = roomOf(roomId);
    for (const rc of res.receipts) {
      const w = (r.wm[rc.userId] ||= { delivered: 0, seen: 0 });
      if (rc.status === "seen") w.seen = Math.max(w.seen, seq);
      if (rc.status !== "sent") w.delivered = Math.max(w.delivered, seq);
    }
    bump();
    return res.receipts;
  }

  // the other members of a room, as far as this client knows
  const othersOf = (roomId) => {
    const summary = s.rooms.find((x) => x.roomId === roomId);
    if (summary) return summary.members.filter((u) => u !== me);
    if (s.open && s.open.roomId === roomId && s.open.targetUserId) return [s.open.targetUserId];
    return Object.keys(roomOf(roomId).wm);
  };

  // status of my message: the lowest member watermark, never below what the
  // server said of that message (ack, history, aggregate)
  const statusOf = (roomId, m) => {
    const r = roomOf(roomId);
    const others = othersOf(roomId);
    let rank = RANK.seen;
    for (const u of others) {
      const w = r.wm[u];
      const ur = w && w.seen >= m.seq ? RANK.seen : w && w.delivered >= m.seq ? RANK.delivered : RANK.sent;
      rank = Math.min(rank, ur);
    }
    if (others.length === 0) rank = RANK.sent;
    rank = Math.max(rank, r.floor[m.id] || RANK.sent);
    return NAMES[rank];
  };

  const seenBy = (roomId, m) => {
    const r = roomOf(roomId);
    const others = othersOf(roomId);
    const agg = statusOf(roomId, m);
    const n = agg === "seen" ? others.length : others.filter((u) => r.wm[u] && r.wm[u].seen >= m.seq).length;
    return { n, of: others.length };
  };

  const roomView = (roomId, targetUserId) => {
    const r = roomId ? roomOf(roomId) : emptyRoom();
    const messages = Object.values(r.byId).sort((a, b) => a.seq - b.seq);
    const pending = s.pending.filter(
      (p) => (roomId && p.roomId === roomId) || (targetUserId && !p.roomId && p.targetUserId === targetUserId),
    );
    const t = roomId && s.typing[roomId];
    return {
      messages,
      pending,
      // seqs run 1, 2, 3...: older pages exist while one below nextBefore is missing
      hasOlder: r.loaded && r.nextBefore != null && messages.filter((m) => m.seq < r.nextBefore).length < r.nextBefore - 1,
      loaded: r.loaded,
      typing: t && t.until > Date.now() ? t : null,
    };
  };

  return {
    me,
    myName,
    conn: s.conn,
    rooms: s.rooms,
    roomsError: s.roomsError,
    presence: s.presence,
    open: s.open,
    error: s.error,
    clearError: () => {
      s.error = "";
      bump();
    },
    api: (...a) => apiRef.current(...a),
    refreshRooms,
    openChat,
    closeRoom,
    sendMessage,
    typing,
    markSeen,
    loadOlder: (roomId) => loadHistory(roomId, true),
    receipts,
    roomView,
    statusOf,
    seenBy,
    othersOf,
  };
}
