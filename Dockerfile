# chat-gateway image. The build stage and the runtime stage install their
# packages with the same script the README and CI use.
#   docker build -t chat .
#   docker run -p 3000:3000 -e CHAT_JWT_SECRET=... -e CHAT_REDIS_URL=redis://redis:6379 chat
FROM debian:12 AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh --build
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHAT_WERROR=ON \
 && cmake --build build -j"$(nproc)" --target chat-gateway

FROM debian:12
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN /tmp/install-deps.sh --runtime && rm -rf /tmp/install-deps.sh /var/lib/apt/lists/*
COPY --from=build /src/build/bin/chat-gateway /usr/local/bin/chat-gateway
USER nobody
EXPOSE 3000
ENV CHAT_LISTEN=0.0.0.0:3000
ENTRYPOINT ["/usr/local/bin/chat-gateway"]
