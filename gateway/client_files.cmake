# cmake -DSRC=DIST -DDST=DIR -P client_files.cmake
# Copies the socket.io-client dist files chat-gateway serves from SRC to DST
# (only those that changed), or says why it cannot.
set(files socket.io.js socket.io.js.map socket.io.min.js socket.io.min.js.map
          socket.io.esm.min.js socket.io.esm.min.js.map)
foreach(f IN LISTS files)
  if(NOT EXISTS "${SRC}/${f}")
    message(STATUS "web/client/node_modules has no socket.io-client (run npm ci in web/client): "
                   "chat-gateway will not serve /socket.io/socket.io.js")
    return()
  endif()
endforeach()
file(MAKE_DIRECTORY "${DST}")
foreach(f IN LISTS files)
  configure_file("${SRC}/${f}" "${DST}/${f}" COPYONLY)
endforeach()
