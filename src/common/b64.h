/* Base64 (RFC 4648, with padding) for binary blobs inside JSON documents. */
#ifndef BERTH_B64_H
#define BERTH_B64_H

#include <stddef.h>
#include <stdint.h>

/* Encode len bytes; returns a malloc'd NUL-terminated string, NULL without memory. */
char *b64_encode(const void *data, size_t len);
/* Decode s; returns a malloc'd buffer and its length in *len, NULL if s is not valid base64. */
uint8_t *b64_decode(const char *s, size_t *len);

#endif
