/*
 * sockaddr.h - converting between pl_addr and the kernel's socket addresses.
 *
 * Internal to the I/O drivers (the event loop, the daemon's control socket,
 * the network-namespace test helpers): protocol cores never see a sockaddr.
 * The sockaddr types need <sys/socket.h> and <netinet/in.h>, which is why this
 * lives in its own header rather than in loop.h.
 */
#ifndef PL_SOCKADDR_H
#define PL_SOCKADDR_H

#include <netinet/in.h>
#include <sys/socket.h>

#include "parley.h"

/* Fills ss and *len from a; false for PL_AF_NONE or an unknown family. */
bool pl_sockaddr_from_addr(const pl_addr *a, struct sockaddr_storage *ss, socklen_t *len);
/* Converts an AF_INET or AF_INET6 address; anything else becomes PL_AF_NONE. */
void pl_sockaddr_to_addr(const struct sockaddr *sa, pl_addr *out);

#endif
