/* The few libc pieces `hello` needs: memory/string helpers and a small snprintf. */
#include "hello.h"

void *memset(void *dst, int c, size_t n) {
  unsigned char *d = dst;
  while (n--) *d++ = (unsigned char)c;
  return dst;
}

void *memcpy(void *dst, const void *src, size_t n) {
  unsigned char *d = dst;
  const unsigned char *s = src;
  while (n--) *d++ = *s++;
  return dst;
}

size_t strlen(const char *s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

int strcmp(const char *a, const char *b) {
  while (*a && *a == *b) a++, b++;
  return (unsigned char)*a - (unsigned char)*b;
}

struct out {
  char *buf;
  size_t size, len;
};

static void put(struct out *o, char c) {
  if (o->len + 1 < o->size) o->buf[o->len] = c;
  o->len++;
}

static void put_unsigned(struct out *o, unsigned long long v, unsigned base, int width, char pad) {
  char digits[24];
  int n = 0;
  do {
    digits[n++] = "0123456789abcdef"[v % base];
    v /= base;
  } while (v);
  while (width-- > n) put(o, pad);
  while (n) put(o, digits[--n]);
}

/* Supports %s %c %d %u %x with optional width/zero padding and l/ll length: what printk uses. */
int vformat(char *buf, size_t size, const char *fmt, va_list ap) {
  struct out o = {buf, size, 0};
  for (; *fmt; fmt++) {
    if (*fmt != '%') {
      put(&o, *fmt);
      continue;
    }
    fmt++;
    char pad = ' ';
    int width = 0, longs = 0;
    if (*fmt == '0') pad = '0', fmt++;
    while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
    while (*fmt == 'l') longs++, fmt++;
    switch (*fmt) {
      case 's': {
        const char *s = va_arg(ap, const char *);
        if (!s) s = "(null)";
        while (*s) put(&o, *s++);
        break;
      }
      case 'c': put(&o, (char)va_arg(ap, int)); break;
      case 'd': {
        long long v = longs ? va_arg(ap, long long) : va_arg(ap, int);
        if (v < 0) put(&o, '-'), v = -v;
        put_unsigned(&o, (unsigned long long)v, 10, width, pad);
        break;
      }
      case 'u':
      case 'x': {
        unsigned long long v = longs ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned);
        put_unsigned(&o, v, *fmt == 'u' ? 10 : 16, width, pad);
        break;
      }
      case '%': put(&o, '%'); break;
      default: put(&o, '?'); break;
    }
  }
  if (size) o.buf[o.len < size ? o.len : size - 1] = 0;
  return (int)o.len;
}

int format(char *buf, size_t size, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vformat(buf, size, fmt, ap);
  va_end(ap);
  return n;
}
