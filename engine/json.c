/* json: lua-cjson 2.1.0's default behaviour, in fewer instructions (the
 * contract is in json.h).
 *
 * Where the time went in lua-cjson (bench mapping, ~200-byte objects):
 * decode grows each table key by key, rehashing it at 1, 2, 4, 8 keys;
 * copies every string into a scratch buffer before pushing it; calls strtod
 * for every number; encode formats every number with snprintf. Here:
 *
 * - decode pushes an object's members (or an array's elements) onto the Lua
 *   stack first and creates the table with its final size once the
 *   container ends (or after CHUNK members, or when the stack is short:
 *   then the rest is set directly, as lua-cjson does);
 * - strings without escapes are pushed straight from the input;
 * - numbers of up to 15 digits without fraction or exponent are computed
 *   directly (exact in a double, hence what strtod gives); everything else
 *   goes to strtod. The daemon never calls setlocale, so strtod reads '.'
 *   as lua-cjson's fpconv_strtod does;
 * - encode writes into a buffer on the C stack and, past that, into Lua
 *   userdata (Lua memory: counted by the sandbox, collected when an error
 *   unwinds); integers below 1e14 are printed by hand, which gives the same
 *   digits as "%.14g".
 *
 * Errors: the parser only notes where the unexpected token starts and what
 * it expected there; describe_token() then reads that token the way
 * lua-cjson's tokenizer does, for the same message and character position. */
#include "zkflow/json.h"

#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "zkflow/sandbox.h"

#define MAX_DEPTH 1000

/* Members (object) or elements (array) kept on the stack before the table
 * is created. */
#define CHUNK 64

/* Containers keep their members on the stack only while the stack holds
 * fewer than this many slots: lua_checkstack() refuses past LUAI_MAXCSTACK
 * (8000) slots in one C call, and each of up to MAX_DEPTH open containers
 * still needs 3 slots (table, key, value). */
#define PENDING_STACK_MAX 4500

/* Slots from the bottom of the decode/encode call's stack: 1 is the
 * argument, 2 holds the scratch userdata (or nil). */
#define SCRATCH_SLOT 2

/* Values (or 1 KB blocks of a string being encoded) between two looks at
 * the sandbox's clock (zf_sandbox_check_time): tens of MB of JSON take
 * hundreds of milliseconds, more than the time limit. */
#define VALUES_PER_CHECK 1024

static inline void count_value(lua_State *L, int *left) {
    if (--*left < 0) {
        *left = VALUES_PER_CHECK;
        zf_sandbox_check_time(L);
    }
}

/* ---- decode ------------------------------------------------------------- */

typedef struct dec {
    lua_State *L;
    const char *data; /* the text; data[len] is NUL (a Lua string) */
    const char *p;    /* next byte */
    int depth;
    char *scratch; /* SCRATCH_SLOT's userdata, for strings with escapes */
    size_t scratch_cap;
    int left; /* values until the next look at the clock */
} dec_t;

/* JSON whitespace as lua-cjson sees it. */
static const unsigned char is_ws[256] = {[' '] = 1, ['\t'] = 1, ['\n'] = 1,
                                         ['\r'] = 1};

/* Bytes that end the fast scan of a string. */
static const unsigned char str_stop[256] = {['"'] = 1, ['\\'] = 1, [0] = 1};

/* The byte an escape stands for; 'u' for \u; 0 for an invalid escape. */
static const char unescape[256] = {
    ['"'] = '"', ['\\'] = '\\', ['/'] = '/',  ['b'] = '\b', ['f'] = '\f',
    ['n'] = '\n', ['r'] = '\r', ['t'] = '\t', ['u'] = 'u',
};

static inline const char *skip_ws(const char *p) {
    while (is_ws[(unsigned char)*p])
        p++;
    return p;
}

static int hex4(const char *s) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int c = (unsigned char)s[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            d = (c | 0x20) - 'a' + 10;
        else
            return -1; /* also stops at the NUL that ends the text */
        v = v << 4 | d;
    }
    return v;
}

/* The \u escape at s (s[0] is '\\', s[1] 'u'): stores its UTF-8 in out and
 * returns the escape's length (6, or 12 for a surrogate pair), or 0 when it
 * is invalid, by lua-cjson's rules. *outlen gets the UTF-8 length. */
static int unicode_escape(const char *s, char *out, int *outlen) {
    int cp = hex4(s + 2), len = 6;
    if (cp < 0)
        return 0;
    if ((cp & 0xF800) == 0xD800) {
        if (cp & 0x400) /* a low surrogate first */
            return 0;
        if (s[6] != '\\' || s[7] != 'u')
            return 0;
        int lo = hex4(s + 8);
        if (lo < 0 || (lo & 0xFC00) != 0xDC00)
            return 0;
        cp = (((cp & 0x3FF) << 10) | (lo & 0x3FF)) + 0x10000;
        len = 12;
    }
    if (cp <= 0x7F) {
        out[0] = (char)cp;
        *outlen = 1;
    } else if (cp <= 0x7FF) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        *outlen = 2;
    } else if (cp <= 0xFFFF) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        *outlen = 3;
    } else {
        out[0] = (char)(0xF0 | cp >> 18);
        out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
        out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[3] = (char)(0x80 | (cp & 0x3F));
        *outlen = 4;
    }
    return len;
}

/* lua-cjson's check for numbers JSON does not allow, used (with
 * decode_invalid_numbers on, its default) only to let the tokens that
 * start with '+', 'i', 'I', 'n' or 'N' through to strtod. */
static int nonjson_number(const char *p) {
    if (*p == '+')
        return 1;
    if (*p == '-')
        p++;
    if (*p == '0' || *p <= '9')
        return 0;
    return strncasecmp(p, "inf", 3) == 0 || strncasecmp(p, "nan", 3) == 0;
}

/* What lua-cjson's tokenizer reports for the token at p (whitespace
 * already skipped): its name or error, and the 0-based position lua-cjson
 * prints (plus one). */
static const char *describe_token(const char *p, const char **at) {
    *at = p;
    switch (*p) {
    case '{': return "T_OBJ_BEGIN";
    case '}': return "T_OBJ_END";
    case '[': return "T_ARR_BEGIN";
    case ']': return "T_ARR_END";
    case ',': return "T_COMMA";
    case ':': return "T_COLON";
    case '\0': return "T_END";
    case '"':
        for (const char *s = p + 1; *s != '"';) {
            if (*s == '\0') {
                *at = s;
                return "unexpected end of string";
            }
            if (*s != '\\') {
                s++;
                continue;
            }
            char c = unescape[(unsigned char)s[1]];
            if (c == 'u') {
                char u[4];
                int ulen, n = unicode_escape(s, u, &ulen);
                if (!n) {
                    *at = s;
                    return "invalid unicode escape code";
                }
                s += n;
            } else if (!c) {
                *at = s;
                return "invalid escape code";
            } else {
                s += 2;
            }
        }
        return "T_STRING";
    }
    char *end;
    if (*p == '-' || (*p >= '0' && *p <= '9'))
        goto number;
    if (strncmp(p, "true", 4) == 0 || strncmp(p, "false", 5) == 0)
        return "T_BOOLEAN";
    if (strncmp(p, "null", 4) == 0)
        return "T_NULL";
    if (nonjson_number(p))
        goto number;
    return "invalid token";
number:
    strtod(p, &end);
    return end == p ? "invalid number" : "T_NUMBER";
}

/* Raise lua-cjson's syntax error for the token at p, where `expected` was
 * wanted. */
static void __attribute__((noreturn))
syntax_error(dec_t *d, const char *expected, const char *p) {
    const char *at;
    const char *found = describe_token(p, &at);
    luaL_error(d->L, "Expected %s but found %s at character %d", expected,
               found, (int)(at - d->data) + 1);
    abort(); /* not reached */
}

static void descend(dec_t *d) {
    /* 3 slots as in lua-cjson: table, key, value. */
    if (++d->depth > MAX_DEPTH || !lua_checkstack(d->L, 3)) {
        luaL_error(d->L,
                   "Found too many nested data structures (%d) at "
                   "character %d",
                   d->depth, (int)(d->p - d->data));
    }
}

/* Room for n bytes of unescaped string: SCRATCH_SLOT's userdata, replaced
 * by a larger one when needed. */
static char *scratch(dec_t *d, size_t n) {
    if (n > d->scratch_cap) {
        size_t cap = n < 256 ? 256 : n;
        d->scratch = lua_newuserdata(d->L, cap);
        d->scratch_cap = cap;
        lua_replace(d->L, SCRATCH_SLOT);
    }
    return d->scratch;
}

/* The rest of parse_string, for a string with escapes (or without an
 * end): s is the first backslash (or the NUL). Apart so that the common
 * case does without the buffer on the C stack. [-0, +1] */
static void __attribute__((noinline))
parse_escaped(dec_t *d, const char *expected, const char *start,
              const char *s) {
    /* Find the end first, so the buffer can hold the whole raw string;
     * unescaped it is never longer. */
    const char *e = s;
    while (*e != '"') {
        if (*e == '\0' || (*e == '\\' && e[1] == '\0'))
            syntax_error(d, expected, d->p);
        e += *e == '\\' ? 2 : 1;
    }
    char stackbuf[256];
    size_t raw = (size_t)(e - start);
    char *out = raw <= sizeof stackbuf ? stackbuf : scratch(d, raw);
    size_t n = (size_t)(s - start);
    memcpy(out, start, n);
    while (s < e) {
        if (*s != '\\') {
            out[n++] = *s++;
            continue;
        }
        char c = unescape[(unsigned char)s[1]];
        if (c == 'u') {
            int ulen, len = unicode_escape(s, out + n, &ulen);
            if (!len)
                syntax_error(d, expected, d->p);
            n += (size_t)ulen;
            s += len;
        } else if (c) {
            out[n++] = c;
            s += 2;
        } else {
            syntax_error(d, expected, d->p);
        }
    }
    /* A surrogate pair's second escape may have reached past e only if the
     * pair straddled the closing quote, which unicode_escape refuses. */
    lua_pushlstring(d->L, out, n);
    d->p = e + 1;
}

/* The string whose opening quote is at d->p; `expected` names it in
 * errors ("value" or "object key string"). [-0, +1] */
static void parse_string(dec_t *d, const char *expected) {
    const char *start = d->p + 1, *s = start;
    while (!str_stop[(unsigned char)*s])
        s++;
    if (*s == '"') {
        lua_pushlstring(d->L, start, (size_t)(s - start));
        d->p = s + 1;
        return;
    }
    parse_escaped(d, expected, start, s);
}

static const double pow10_tab[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,
                               1e6, 1e7, 1e8,  1e9,  1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16};

/* The number at d->p. [-0, +1] */
static void parse_number(dec_t *d) {
    const char *p = d->p, *s = p;
    int neg = *s == '-';
    s += neg;
    if (*s >= '0' && *s <= '9') {
        /* Up to 15 digits, no fraction, exponent or hex prefix: exact. */
        const char *ds = s;
        uint64_t u = 0;
        while (*s >= '0' && *s <= '9' && s - ds < 16)
            u = u * 10 + (uint64_t)(*s++ - '0');
        int c = (unsigned char)*s, frac = 0;
        if (c == '.' && s[1] >= '0' && s[1] <= '9') {
            /* A fraction: still exact if all digits fit in 15. */
            const char *fs = ++s;
            while (*s >= '0' && *s <= '9' && s - ds < 17)
                u = u * 10 + (uint64_t)(*s++ - '0');
            frac = (int)(s - fs);
            c = (unsigned char)*s;
            if (s - ds - 1 > 15)
                c = '0'; /* too many digits: strtod */
        }
        if (s - ds - (frac > 0) <= 15 && !(c >= '0' && c <= '9') &&
            c != '.' && (c | 0x20) != 'e' && (c | 0x20) != 'x') {
            /* u and 10^frac are exact doubles, and IEEE division rounds
             * correctly: the same double strtod returns. */
            double v = frac ? (double)u / pow10_tab[frac] : (double)u;
            lua_pushnumber(d->L, neg ? -v : v);
            d->p = s;
            return;
        }
    }
    char *end;
    double v = strtod(p, &end);
    if (end == p)
        syntax_error(d, "value", p);
    lua_pushnumber(d->L, v);
    d->p = end;
}

static void parse_value(dec_t *d);

/* Whether a container may keep members on the stack. */
static int can_pend(lua_State *L) {
    return lua_gettop(L) <= PENDING_STACK_MAX - (2 * CHUNK + 4) &&
           lua_checkstack(L, 2 * CHUNK + 4);
}

/* Replace the n key/value pairs above stack slot `base` (and the slot
 * base + 1 they start at) with one table holding them, made at its size.
 * In order, so that a repeated key keeps its last value. [-2n, +1] */
static void object_from_pending(lua_State *L, int base, int n) {
    lua_createtable(L, 0, n);
    for (int i = 1; i <= 2 * n; i += 2) {
        lua_pushvalue(L, base + i);
        lua_pushvalue(L, base + i + 1);
        lua_rawset(L, -3);
    }
    lua_replace(L, base + 1);
    lua_settop(L, base + 1);
}

/* Replace the n values above stack slot `base` (and the slot base + 1
 * they start at) with one array holding them, made at its size.
 * [-n, +1] */
static void array_from_pending(lua_State *L, int base, int n) {
    lua_createtable(L, n, 0);
    lua_insert(L, base + 1);
    for (int i = n; i >= 1; i--)
        lua_rawseti(L, base + 1, i);
}

/* Open the container whose opening bracket is at d->p - 1 and closes with
 * `close`. *base: the stack top before it. *direct: its members go
 * straight into a table pushed now, as the stack has no room to keep them
 * pending (else the table is made at its size once they are all read).
 * Returns 1 when the container is empty: its table is pushed, and it is
 * done. [-0, +(0|1)] */
static int open_container(dec_t *d, char close, int *base, int *direct) {
    lua_State *L = d->L;
    descend(d);
    *base = lua_gettop(L);
    *direct = !can_pend(L);
    if (*direct)
        lua_newtable(L);
    d->p = skip_ws(d->p);
    if (*d->p != close)
        return 0;
    d->p++;
    if (!*direct)
        lua_createtable(L, 0, 0);
    d->depth--;
    return 1;
}

/* The object after '{' at d->p - 1. [-0, +1] */
static void parse_object(dec_t *d) {
    lua_State *L = d->L;
    int base, direct, n = 0;
    if (open_container(d, '}', &base, &direct))
        return;
    for (;;) {
        if (*d->p != '"')
            syntax_error(d, "object key string", d->p);
        parse_string(d, "object key string");
        d->p = skip_ws(d->p);
        if (*d->p != ':')
            syntax_error(d, "colon", d->p);
        d->p = skip_ws(d->p + 1);
        parse_value(d);
        if (direct) {
            lua_rawset(L, base + 1);
        } else if (++n == CHUNK) {
            object_from_pending(L, base, n);
            direct = 1;
        }
        d->p = skip_ws(d->p);
        if (*d->p == '}')
            break;
        if (*d->p != ',')
            syntax_error(d, "comma or object end", d->p);
        d->p = skip_ws(d->p + 1);
    }
    d->p++;
    if (!direct)
        object_from_pending(L, base, n);
    d->depth--;
}

/* The array after '[' at d->p - 1. [-0, +1] */
static void parse_array(dec_t *d) {
    lua_State *L = d->L;
    int base, direct, n = 0;
    if (open_container(d, ']', &base, &direct))
        return;
    for (;;) {
        parse_value(d);
        n++;
        if (direct) {
            lua_rawseti(L, base + 1, n);
        } else if (n == CHUNK) {
            array_from_pending(L, base, n);
            direct = 1;
        }
        d->p = skip_ws(d->p);
        if (*d->p == ']')
            break;
        if (*d->p != ',')
            syntax_error(d, "comma or array end", d->p);
        d->p = skip_ws(d->p + 1);
    }
    d->p++;
    if (!direct)
        array_from_pending(L, base, n);
    d->depth--;
}

/* The value at d->p (whitespace skipped). [-0, +1] */
static void parse_value(dec_t *d) {
    count_value(d->L, &d->left);
    const char *p = d->p;
    switch (*p) {
    case '"':
        parse_string(d, "value");
        return;
    case '{':
        d->p++;
        parse_object(d);
        return;
    case '[':
        d->p++;
        parse_array(d);
        return;
    case '-':
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        parse_number(d);
        return;
    case 't':
        if (strncmp(p, "true", 4) == 0) {
            lua_pushboolean(d->L, 1);
            d->p += 4;
            return;
        }
        break;
    case 'f':
        if (strncmp(p, "false", 5) == 0) {
            lua_pushboolean(d->L, 0);
            d->p += 5;
            return;
        }
        break;
    case 'n':
        if (strncmp(p, "null", 4) == 0) {
            lua_pushlightuserdata(d->L, NULL);
            d->p += 4;
            return;
        }
        break;
    }
    if (nonjson_number(p)) { /* +1, inf, nan: what strtod makes of them */
        parse_number(d);
        return;
    }
    syntax_error(d, "value", p);
}

static int json_decode(lua_State *L) {
    luaL_argcheck(L, lua_gettop(L) == 1, 1, "expected 1 argument");
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    if (len >= 2 && (!s[0] || !s[1]))
        luaL_error(L, "JSON parser does not support UTF-16 or UTF-32");
    lua_pushnil(L); /* SCRATCH_SLOT */
    dec_t d = {.L = L, .data = s, .p = skip_ws(s), .left = VALUES_PER_CHECK};
    parse_value(&d);
    d.p = skip_ws(d.p);
    if (*d.p != '\0')
        syntax_error(&d, "the end", d.p);
    return 1;
}

/* ---- encode ------------------------------------------------------------- */

typedef struct enc {
    lua_State *L;
    char *buf; /* local, or SCRATCH_SLOT's userdata */
    size_t len, cap;
    int left; /* values until the next look at the clock */
} enc_t;

/* Make room for n more bytes. */
static void __attribute__((noinline)) grow(enc_t *e, size_t n) {
    size_t cap = e->cap * 2;
    if (cap < e->len + n)
        cap = e->len + n;
    char *nb = lua_newuserdata(e->L, cap);
    memcpy(nb, e->buf, e->len);
    lua_replace(e->L, SCRATCH_SLOT); /* the old one is garbage now */
    e->buf = nb;
    e->cap = cap;
}

static inline char *reserve(enc_t *e, size_t n) {
    if (e->cap - e->len < n)
        grow(e, n);
    return e->buf + e->len;
}

static inline void put(enc_t *e, const char *s, size_t n) {
    memcpy(reserve(e, n), s, n);
    e->len += n;
}

static inline void put_char(enc_t *e, char c) {
    *reserve(e, 1) = c;
    e->len++;
}

/* lua-cjson's escapes; NULL for bytes written as they are. */
static const char *const escapes[256] = {
    "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005",
    "\\u0006", "\\u0007", "\\b",     "\\t",     "\\n",     "\\u000b",
    "\\f",     "\\r",     "\\u000e", "\\u000f", "\\u0010", "\\u0011",
    "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017",
    "\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c", "\\u001d",
    "\\u001e", "\\u001f", ['"'] = "\\\"", ['/'] = "\\/", ['\\'] = "\\\\",
    [0x7f] = "\\u007f",
};

static void put_string(enc_t *e, const char *s, size_t len) {
    put_char(e, '"');
    while (len > 0) {
        /* At most 6 bytes per input byte; in blocks, so that a long string
         * does not reserve six times its size at once. */
        size_t n = len < 1024 ? len : 1024;
        if (n == 1024)
            count_value(e->L, &e->left);
        char *o = reserve(e, n * 6), *o0 = o;
        for (size_t i = 0; i < n; i++) {
            const char *esc = escapes[(unsigned char)s[i]];
            if (!esc) {
                *o++ = s[i];
            } else {
                size_t el = esc[1] == 'u' ? 6 : 2;
                memcpy(o, esc, el);
                o += el;
            }
        }
        e->len += (size_t)(o - o0);
        s += n;
        len -= n;
    }
    put_char(e, '"');
}

static void __attribute__((noreturn))
encode_error(lua_State *L, int idx, const char *reason) {
    luaL_error(L, "Cannot serialise %s: %s", lua_typename(L, lua_type(L, idx)),
               reason);
    abort(); /* not reached */
}

/* The number at idx, as "%.14g" writes it. */
static void put_number(enc_t *e, int idx) {
    double v = lua_tonumber(e->L, idx);
    if (isnan(v) || isinf(v))
        encode_error(e->L, idx, "must not be NaN or Inf");
    char *o = reserve(e, 32);
    if (v > -1e14 && v < 1e14 && v == (double)(int64_t)v &&
        !(v == 0 && signbit(v))) {
        /* Integers below 1e14 have at most 14 digits: %.14g prints all of
         * them, without exponent or point. */
        int64_t i = (int64_t)v;
        uint64_t u = i < 0 ? (uint64_t)-i : (uint64_t)i;
        char tmp[20];
        int n = 0;
        do {
            tmp[n++] = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        char *start = o;
        if (i < 0)
            *o++ = '-';
        while (n)
            *o++ = tmp[--n];
        e->len += (size_t)(o - start);
        return;
    }
    e->len += (size_t)snprintf(o, 32, "%.14g", v);
}

static void encode_value(enc_t *e, int depth);

/* lua-cjson's test for the table on top: -1 for an object, else the array
 * length (0 for an empty table, which is then written as an object). */
static int array_length(enc_t *e) {
    lua_State *L = e->L;
    int max = 0, items = 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        double k;
        if (items % 16 == 0)
            count_value(L, &e->left);
        if (lua_type(L, -2) == LUA_TNUMBER && (k = lua_tonumber(L, -2)) &&
            floor(k) == k && k >= 1) {
            if (k > max)
                /* lua-cjson stores k in an int; on x86-64 a k past
                 * INT_MAX becomes INT_MIN. */
                max = k < 2147483648.0 ? (int)k : INT32_MIN;
            items++;
            lua_pop(L, 1);
            continue;
        }
        lua_pop(L, 2);
        return -1;
    }
    if (max > items * 2 && max > 10)
        encode_error(L, -1, "excessively sparse array");
    return max;
}

/* The table on top. */
static void encode_table(enc_t *e, int depth) {
    lua_State *L = e->L;
    if (++depth > MAX_DEPTH || !lua_checkstack(L, 3))
        luaL_error(L, "Cannot serialise, excessive nesting (%d)", depth);
    int n = array_length(e);
    if (n > 0) {
        put_char(e, '[');
        for (int i = 1; i <= n; i++) {
            if (i > 1)
                put_char(e, ',');
            lua_rawgeti(L, -1, i);
            encode_value(e, depth);
            lua_pop(L, 1);
        }
        put_char(e, ']');
        return;
    }
    put_char(e, '{');
    int first = 1;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (!first)
            put_char(e, ',');
        first = 0;
        int kt = lua_type(L, -2);
        if (kt == LUA_TSTRING) {
            size_t klen;
            const char *k = lua_tolstring(L, -2, &klen);
            put_string(e, k, klen);
            put_char(e, ':');
        } else if (kt == LUA_TNUMBER) {
            put_char(e, '"');
            put_number(e, -2);
            put(e, "\":", 2);
        } else {
            encode_error(L, -2, "table key must be a number or string");
        }
        encode_value(e, depth);
        lua_pop(L, 1);
    }
    put_char(e, '}');
}

/* The value on top, left there. */
static void encode_value(enc_t *e, int depth) {
    lua_State *L = e->L;
    count_value(L, &e->left);
    switch (lua_type(L, -1)) {
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        put_string(e, s, len);
        return;
    }
    case LUA_TNUMBER:
        put_number(e, -1);
        return;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, -1))
            put(e, "true", 4);
        else
            put(e, "false", 5);
        return;
    case LUA_TTABLE:
        encode_table(e, depth);
        return;
    case LUA_TNIL:
        put(e, "null", 4);
        return;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, -1) == NULL) {
            put(e, "null", 4);
            return;
        }
        break;
    }
    encode_error(L, -1, "type not supported");
}

static int json_encode(lua_State *L) {
    luaL_argcheck(L, lua_gettop(L) == 1, 1, "expected 1 argument");
    char local[2048];
    enc_t e = {.L = L, .buf = local, .cap = sizeof local,
               .left = VALUES_PER_CHECK};
    lua_pushnil(L); /* SCRATCH_SLOT */
    lua_pushvalue(L, 1);
    encode_value(&e, 0);
    lua_pushlstring(L, e.buf, e.len);
    return 1;
}

/* ---- module ------------------------------------------------------------- */

int zf_json_open(lua_State *L) {
    lua_createtable(L, 0, 3);
    lua_pushcfunction(L, json_decode);
    lua_setfield(L, -2, "decode");
    lua_pushcfunction(L, json_encode);
    lua_setfield(L, -2, "encode");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    return 1;
}
