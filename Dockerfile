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
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHAT_WERROR=ON \
 && cmake --build build -j"$(nproc)" --target chat-gateway chat-storage

FROM debian:12
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN /tmp/install-deps.sh --runtime && rm -rf /tmp/install-deps.sh /var/lib/apt/lists/*
COPY --from=build /src/build/bin/chat-gateway /src/build/bin/chat-storage /usr/local/bin/
USER nobody
# chat-gateway listens on 0.0.0.0:3000, chat-storage on 0.0.0.0:3001 (defaults)
EXPOSE 3000 3001
ENTRYPOINT ["/usr/local/bin/chat-gateway"]
