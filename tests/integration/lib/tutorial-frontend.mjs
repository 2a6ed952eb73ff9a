// A "browser tab" running the chat frontend of the Socket.IO tutorials, for
// chat-tutorial.test.mjs. It runs in a worker thread so that, as in a real
// page, io(BASE_URL) gets a socket.io-client of its own (io() caches one
// Manager per URL per module instance).
//
// workerData: {BASE_URL, user: {_id, firstName, lastName}, targetUserId}.
// Posts {type: 'connect'}, {type: 'messageReceived', message} and
// {type: 'connect_error', message}; on {type: 'send', text} it sends.
// Between the markers is the tutorial's code as it stands; around it only
// what a test needs to observe it.

import { parentPort, workerData } from 'node:worker_threads';
import { io } from 'socket.io-client';

const { BASE_URL, user, targetUserId } = workerData;
const userId = user._id;
const messages = [];
const setMessages = (update) => {
  const next = typeof update === 'function' ? update(messages.slice()) : update;
  const added = next.slice(messages.length);
  messages.splice(0, messages.length, ...next);
  for (const message of added) parentPort.postMessage({ type: 'messageReceived', message });
};

// ---- tutorial code: utils/socket.js ------------------------------------
const createSocketConnection = () => {
  return io(BASE_URL);
};

// ---- tutorial code: components/Chat.jsx (the useEffect and sendMessage) -
const socket = createSocketConnection();
// As soon as the page loaded, the socket connection is made and joinChat event is emitted
socket.emit("joinChat", {
  firstName: user.firstName,
  userId,
  targetUserId,
});

socket.on("messageReceived", ({ firstName, lastName, text }) => {
  console.log(firstName + " :  " + text);
  setMessages((messages) => [...messages, { firstName, lastName, text }]);
});

const sendMessage = (newMessage) => {
  socket.emit("sendMessage", {
    firstName: user.firstName,
    lastName: user.lastName,
    userId,
    targetUserId,
    text: newMessage,
  });
};
// ---- end of tutorial code ------------------------------------------------

socket.on('connect', () => parentPort.postMessage({ type: 'connect', transport: socket.io.engine.transport.name }));
socket.io.on('error', (err) => parentPort.postMessage({ type: 'connect_error', message: String(err?.message ?? err) }));
socket.on('connect_error', (err) => parentPort.postMessage({ type: 'connect_error', message: err.message }));
parentPort.on('message', (cmd) => {
  if (cmd.type === 'send') sendMessage(cmd.text);
  if (cmd.type === 'transport') parentPort.postMessage({ type: 'transport', name: socket.io.engine?.transport?.name });
  if (cmd.type === 'close') {
    socket.disconnect();
    parentPort.close();
  }
});
