# One image with both programs, chat-gateway (the entrypoint) and
# chat-storage (run it with --entrypoint /usr/local/bin/chat-storage). The
# build stage and the runtime stage install their packages with the same
# script the README and CI use.
#   docker build -t chat .
#   docker run -p 3000:3000 -e CHAT_JWT_SECRET=... -e CHAT_REDIS_URL=redis://redis:6379 chat
#   docker run -p 3001:3001 -e CHAT_JWT_SECRET=... -e CHAT_REDIS_URL=redis://redis:6379 \
#       -e CHAT_DATABASE_URL=postgresql://chat:...@postgres:5432/chat \
#       --entrypoint /usr/local/bin/chat-storage chat
FROM debian:12 AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh --build
# The socket.io-client bundle the gateway serves at /socket.io/socket.io.js,
# installed with Debian's npm from the committed lock file (never committed
# itself); the build copies its dist files to build/share/chat.
COPY web/client/package.json web/client/package-lock.json web/client/
RUN cd web/client && npm ci --no-audit --no-fund --loglevel=error
# The web app served at / (React + Vite): its packages from the committed
# lock file, its build (web/dist) from the sources below; neither is
# committed.
COPY web/package.json web/package-lock.json web/
RUN cd web && npm ci --no-audit --no-fund --loglevel=error
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHAT_WERROR=ON \
 && cmake --build build -j"$(nproc)" --target chat-gateway chat-storage \
 && test -f build/share/chat/socket.io-client/socket.io.js \
 && cd web && npm run build && test -f dist/index.html

FROM debian:12
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN /tmp/install-deps.sh --runtime && rm -rf /tmp/install-deps.sh /var/lib/apt/lists/*
COPY --from=build /src/build/bin/chat-gateway /src/build/bin/chat-storage /usr/local/bin/
COPY --from=build /src/build/share/chat/ /usr/local/share/chat/
COPY --from=build /src/web/dist/ /usr/local/share/chat/web/
# where the gateway would look anyway (../share/chat beside its bin/); set
# explicitly so an image without the files fails at start-up, naming it
ENV CHAT_CLIENT_DIR=/usr/local/share/chat/socket.io-client
# the web app at / (chat-storage ignores it)
ENV CHAT_WEB_ROOT=/usr/local/share/chat/web
USER nobody
# chat-gateway listens on 0.0.0.0:3000, chat-storage on 0.0.0.0:3001 (defaults)
EXPOSE 3000 3001
ENTRYPOINT ["/usr/local/bin/chat-gateway"]
