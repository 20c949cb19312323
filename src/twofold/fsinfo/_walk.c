/* The walk of fsinfo/scan.py in C, aligned with the catalog's open rows as it goes:
 * a pair whose signatures are equal (an unchanged regular file with one name, or an
 * unchanged folder) is counted and dropped; every other pair is handed to Python, which
 * decides it exactly as before. scan.Scanner is the reference: this file follows it step
 * for step (order, ranges, excludes, descriptors), and tests/unit/test_fastwalk.py checks
 * that both give the same changes. Python wrapper, reasons and layout: fastwalk.py. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#define OPEN_DIR (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
#define TICK 4096 /* dropped pairs between progress ticks (Py_None) */

/* Where a catalog row (a tuple of SIG_SELECT in store/rows.py) keeps what we compare. */
enum { R_PATH = 1, R_KIND, R_SIZE, R_MTIME, R_CTIME, R_INO, R_MODE, R_UID, R_GID,
       R_TARGET, R_RDEV, R_LINK_TO, R_COLS };

/* ---- growable byte buffers --------------------------------------------------------- */

typedef struct { char *p; size_t n, cap; } Buf;

static int buf_reserve(Buf *b, size_t more) {
    if (b->n + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) { PyErr_NoMemory(); return -1; }
    b->p = p; b->cap = cap;
    return 0;
}

static int buf_set(Buf *b, const char *a, size_t na, const char *c, size_t nc, int slash) {
    b->n = 0;
    if (na > PY_SSIZE_T_MAX / 2 || nc > PY_SSIZE_T_MAX / 2) { PyErr_NoMemory(); return -1; }
    if (buf_reserve(b, na + nc + 2) < 0) return -1;
    memcpy(b->p, a, na);
    memcpy(b->p + na, c, nc);
    b->n = na + nc;
    if (slash) b->p[b->n++] = '/';
    b->p[b->n] = 0;
    return 0;
}

/* ---- folder listings --------------------------------------------------------------- */

typedef struct {
    size_t name;      /* offset of the name (NUL-terminated) in the listing's buffer */
    size_t len;
    ssize_t abs;      /* offset of its absolute path (top level only), else -1 */
    char is_dir;      /* as listed (d_type), which decides whether it gets a subtree key */
} Item;

typedef struct {
    Buf names;
    Item *items;
    size_t n, cap;
} Listing;

static void listing_free(Listing *l) {
    free(l->names.p);
    free(l->items);
    memset(l, 0, sizeof *l);
}

static int listing_add(Listing *l, const char *name, size_t len, const char *abs,
                       size_t abs_len, char is_dir) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        Item *items = realloc(l->items, cap * sizeof *items);
        if (!items) { PyErr_NoMemory(); return -1; }
        l->items = items; l->cap = cap;
    }
    if (buf_reserve(&l->names, len + abs_len + 2) < 0) return -1;
    Item *it = &l->items[l->n++];
    it->name = l->names.n;
    it->len = len;
    memcpy(l->names.p + l->names.n, name, len);
    l->names.p[l->names.n + len] = 0;
    l->names.n += len + 1;
    it->abs = -1;
    if (abs) {
        it->abs = (ssize_t)l->names.n;
        memcpy(l->names.p + l->names.n, abs, abs_len);
        l->names.p[l->names.n + abs_len] = 0;
        l->names.n += abs_len + 1;
    }
    it->is_dir = is_dir;
    return 0;
}

/* A folder opened for its walk: a descriptor its entries are looked up relative to
 * (-1: by path), and its absolute path. */
typedef struct { int fd; Buf path; } Here;

/* A key of a level: an item's name, or the name with "/" after it for its subtree. */
typedef struct { size_t item; char sub; } Key;

typedef struct { Buf name; Listing listing; Here here; } Pending;

typedef struct {
    Buf prefix;               /* the level's path, ending in "/" (empty at the top) */
    Listing listing;
    Key *keys;
    size_t nkeys, pos;
    Pending *pending;         /* subfolders listed, waiting for their subtree key */
    size_t npending, cap_pending;
    int whole;                /* every path under prefix lies in the range */
    PyObject *matcher;        /* callable(inner, name) -> bool, or NULL for none */
    size_t cut;               /* where the path inside the source starts */
    Here here;
} Level;

/* ---- the walk object --------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *lo, *hi;                 /* bytes; hi may be Py_None */
    PyObject *matcher_for, *enter_source;
    sqlite3 *db;
    sqlite3_stmt *stmt;
    char *db_name;
    int row_state;                     /* 0 step next, 1 on a row, 2 no more rows */
    Level *stack;
    size_t depth, cap_stack;
    int held, max_held;
    /* the scan item waiting to be aligned */
    int have_item, scan_done;
    int item_kind;                     /* 0 entry, 1 skipped */
    int item_is_dir;                   /* skipped: a folder */
    int item_errno;
    struct stat st;
    Buf rel, path, scratch;
    long long same, files, nbytes;
    int since_tick;
} Walk;

static PyTypeObject StatType;
static PyStructSequence_Field stat_fields[] = {
    {"st_mode", NULL}, {"st_ino", NULL}, {"st_dev", NULL}, {"st_nlink", NULL},
    {"st_uid", NULL}, {"st_gid", NULL}, {"st_size", NULL}, {"st_mtime_ns", NULL},
    {"st_ctime_ns", NULL}, {"st_rdev", NULL}, {NULL, NULL}};
static PyStructSequence_Desc stat_desc = {
    "twofold.fsinfo._walk.stat_result",
    "What the walk read of an entry: the fields Entry is built from.", stat_fields, 10};

static int cmp_bytes(const char *a, size_t na, const char *b, size_t nb) {
    int r = memcmp(a, b, na < nb ? na : nb);
    if (r) return r;
    return na < nb ? -1 : na > nb;
}

static int starts_with(const char *s, size_t ns, const char *p, size_t np) {
    return np <= ns && memcmp(s, p, np) == 0;
}

/* scan.Scanner._touches: some path starting with prefix lies in [lo, hi). */
static int touches(Walk *w, const char *p, size_t n) {
    const char *lo = PyBytes_AS_STRING(w->lo);
    size_t nlo = (size_t)PyBytes_GET_SIZE(w->lo);
    if (w->hi != Py_None &&
        cmp_bytes(p, n, PyBytes_AS_STRING(w->hi), (size_t)PyBytes_GET_SIZE(w->hi)) >= 0)
        return 0;
    return cmp_bytes(lo, nlo, p, n) <= 0 || starts_with(lo, nlo, p, n);
}

/* scan.Scanner._holds: every path starting with prefix lies in [lo, hi). */
static int holds(Walk *w, const char *p, size_t n) {
    const char *lo = PyBytes_AS_STRING(w->lo);
    size_t nlo = (size_t)PyBytes_GET_SIZE(w->lo);
    if (nlo == 0 && w->hi == Py_None) return 1;
    if (cmp_bytes(lo, nlo, p, n) > 0) return 0;
    if (w->hi == Py_None) return 1;
    const char *hi = PyBytes_AS_STRING(w->hi);
    size_t nhi = (size_t)PyBytes_GET_SIZE(w->hi);
    return cmp_bytes(p, n, hi, nhi) < 0 && !starts_with(hi, nhi, p, n);
}

static int in_range(Walk *w, const char *p, size_t n) {
    if (cmp_bytes(PyBytes_AS_STRING(w->lo), (size_t)PyBytes_GET_SIZE(w->lo), p, n) > 0)
        return 0;
    return w->hi == Py_None ||
           cmp_bytes(p, n, PyBytes_AS_STRING(w->hi), (size_t)PyBytes_GET_SIZE(w->hi)) < 0;
}

static void here_close(Walk *w, Here *h) {
    if (h->fd >= 0) {
        close(h->fd);
        h->fd = -1;
        w->held--;
    }
    free(h->path.p);
    memset(&h->path, 0, sizeof h->path);
}

/* scan._list: the items of a folder, and the folder opened for its walk (by descriptor
 * while fewer than max_held are open, else by path). Returns 0, or an errno. */
static int list_dir(Walk *w, const char *name, const char *path, size_t path_len,
                    int parent_fd, Listing *out, Here *here) {
    int fd = -1;
    memset(out, 0, sizeof *out);
    memset(here, 0, sizeof *here);
    here->fd = -1;
    if (w->held < w->max_held) {
        fd = parent_fd >= 0 ? openat(parent_fd, name, OPEN_DIR) : open(path, OPEN_DIR);
        if (fd < 0 && errno != EMFILE && errno != ENFILE) return errno ? errno : EIO;
        if (fd >= 0) w->held++;
    }
    here->fd = fd;
    if (buf_set(&here->path, path, path_len, "", 0, 0) < 0) {
        here_close(w, here);
        return -1;
    }
    DIR *d;
    if (fd >= 0) {
        int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
        if (!d && dup_fd >= 0) {
            int e = errno;
            close(dup_fd);
            errno = e;
        }
    } else {
        d = opendir(path);
    }
    if (!d) {
        int e = errno ? errno : EIO;
        here_close(w, here);
        return e;
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) break;
        const char *n = de->d_name;
        if (n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0))) continue;
        char is_dir = de->d_type == DT_DIR;
        if (de->d_type == DT_UNKNOWN) {  /* as DirEntry.is_dir(follow_symlinks=False) */
            struct stat st;
            if (fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) == 0)
                is_dir = S_ISDIR(st.st_mode) != 0;
            else if (errno != ENOENT)
                break;
        }
        if (listing_add(out, n, strlen(n), NULL, 0, is_dir) < 0) {
            closedir(d);
            listing_free(out);
            here_close(w, here);
            return -1;
        }
    }
    int e = errno;
    closedir(d);
    if (e) {
        listing_free(out);
        here_close(w, here);
        return e;
    }
    return 0;
}

/* Orders the keys of a level as bytes: a name, or the name followed by "/". */
static const Listing *sort_listing;

static int key_char(const Key *k, size_t i) {
    const Item *it = &sort_listing->items[k->item];
    if (i < it->len) return (unsigned char)sort_listing->names.p[it->name + i];
    return i == it->len && k->sub ? '/' : -1;
}

static int key_cmp(const void *pa, const void *pb) {
    const Key *a = pa, *b = pb;
    const Item *ia = &sort_listing->items[a->item], *ib = &sort_listing->items[b->item];
    size_t m = ia->len < ib->len ? ia->len : ib->len;
    int r = memcmp(sort_listing->names.p + ia->name, sort_listing->names.p + ib->name, m);
    if (r) return r;
    for (size_t i = m;; i++) {
        int ca = key_char(a, i), cb = key_char(b, i);
        if (ca != cb) return ca < cb ? -1 : 1;
        if (ca < 0) return 0;
    }
}

static void level_free(Walk *w, Level *L) {
    free(L->prefix.p);
    listing_free(&L->listing);
    free(L->keys);
    for (size_t i = 0; i < L->npending; i++) {
        free(L->pending[i].name.p);
        listing_free(&L->pending[i].listing);
        here_close(w, &L->pending[i].here);
    }
    free(L->pending);
    Py_XDECREF(L->matcher);
    here_close(w, &L->here);
    memset(L, 0, sizeof *L);
}

/* scan.Scanner._level: push a level for prefix, taking over the listing and the folder. */
static int push_level(Walk *w, const char *prefix, size_t n, Listing *listing, Here *here) {
    if (w->depth == w->cap_stack) {
        size_t cap = w->cap_stack ? 2 * w->cap_stack : 16;
        Level *s = realloc(w->stack, cap * sizeof *s);
        if (!s) { PyErr_NoMemory(); return -1; }
        w->stack = s; w->cap_stack = cap;
    }
    Level *L = &w->stack[w->depth++];
    memset(L, 0, sizeof *L);
    L->listing = *listing;
    memset(listing, 0, sizeof *listing);
    L->here = *here;
    memset(here, 0, sizeof *here);
    here->fd = -1;
    if (buf_set(&L->prefix, prefix, n, "", 0, 0) < 0) goto fail;
    size_t nkeys = 0;
    for (size_t i = 0; i < L->listing.n; i++) nkeys += 1 + (L->listing.items[i].is_dir != 0);
    L->keys = malloc((nkeys ? nkeys : 1) * sizeof *L->keys);
    if (!L->keys) { PyErr_NoMemory(); goto fail; }
    for (size_t i = 0; i < L->listing.n; i++) {
        L->keys[L->nkeys++] = (Key){i, 0};
        if (L->listing.items[i].is_dir) L->keys[L->nkeys++] = (Key){i, 1};
    }
    sort_listing = &L->listing;
    qsort(L->keys, L->nkeys, sizeof *L->keys, key_cmp);
    L->whole = holds(w, prefix, n);
    const char *slash = memchr(prefix, '/', n);
    size_t top = slash ? (size_t)(slash - prefix) : n;
    L->cut = top + 1;
    PyObject *m = PyObject_CallFunction(w->matcher_for, "y#", prefix, (Py_ssize_t)top);
    if (!m) goto fail;
    if (m == Py_None) Py_DECREF(m);
    else L->matcher = m;
    return 0;
fail:
    level_free(w, L);
    w->depth--;
    return -1;
}

/* The matcher's answer for (inner, name), each with "/" after it for a folder:
 * 1 excluded, 0 not, -1 error. */
static int excluded(Level *L, const char *inner, size_t ninner, const char *name,
                    size_t nname, int slash) {
    if (!L->matcher) return 0;
    PyObject *a = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(ninner + slash));
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(nname + slash));
    if (!a || !b) { Py_XDECREF(a); Py_XDECREF(b); return -1; }
    memcpy(PyBytes_AS_STRING(a), inner, ninner);
    memcpy(PyBytes_AS_STRING(b), name, nname);
    if (slash) {
        PyBytes_AS_STRING(a)[ninner] = '/';
        PyBytes_AS_STRING(b)[nname] = '/';
    }
    PyObject *r = PyObject_CallFunctionObjArgs(L->matcher, a, b, NULL);
    Py_DECREF(a);
    Py_DECREF(b);
    if (!r) return -1;
    int t = PyObject_IsTrue(r);
    Py_DECREF(r);
    return t;
}

static int add_pending(Level *L, const char *name, size_t len, Listing *listing,
                       Here *here) {
    if (L->npending == L->cap_pending) {
        size_t cap = L->cap_pending ? 2 * L->cap_pending : 4;
        Pending *p = realloc(L->pending, cap * sizeof *p);
        if (!p) { PyErr_NoMemory(); return -1; }
        L->pending = p; L->cap_pending = cap;
    }
    Pending *p = &L->pending[L->npending];
    memset(p, 0, sizeof *p);
    if (buf_set(&p->name, name, len, "", 0, 0) < 0) return -1;
    p->listing = *listing;
    p->here = *here;
    L->npending++;
    return 0;
}

/* The next entry of the walk into w->rel/st/path (item_kind 0) or a skipped path
 * (item_kind 1, item_errno, item_is_dir): 1, or 0 at the end, or -1 on an error. */
static int scan_next(Walk *w) {
    while (w->depth) {
        Level *L = &w->stack[w->depth - 1];
        if (L->pos == L->nkeys) {
            level_free(w, L);
            w->depth--;
            continue;
        }
        Key k = L->keys[L->pos++];
        Item *it = &L->listing.items[k.item];
        const char *name = L->listing.names.p + it->name;
        if (buf_set(&w->rel, L->prefix.p, L->prefix.n, name, it->len, 0) < 0) return -1;
        if (k.sub) {
            for (size_t i = 0; i < L->npending; i++) {
                Pending *p = &L->pending[i];
                if (p->name.n != it->len || memcmp(p->name.p, name, it->len)) continue;
                Pending taken = *p;
                L->pending[i] = L->pending[--L->npending];
                w->rel.p[w->rel.n++] = '/';
                int r = push_level(w, w->rel.p, w->rel.n, &taken.listing, &taken.here);
                free(taken.name.p);
                if (r < 0) {
                    listing_free(&taken.listing);
                    here_close(w, &taken.here);
                    return -1;
                }
                break;
            }
            continue;
        }
        const char *rel = w->rel.p;
        size_t nrel = w->rel.n;
        int emit = L->whole || in_range(w, rel, nrel);
        if (!emit) {
            if (!it->is_dir) continue;
            if (buf_set(&w->scratch, rel, nrel, "", 0, 1) < 0) return -1;
            if (!touches(w, w->scratch.p, w->scratch.n)) continue;
        }
        int by_path = L->here.fd < 0;
        if (it->abs >= 0) {
            const char *abs = L->listing.names.p + it->abs;
            if (buf_set(&w->path, abs, strlen(abs), "", 0, 0) < 0) return -1;
        } else {
            if (buf_set(&w->path, L->here.path.p, L->here.path.n, "/", 1, 0) < 0) return -1;
            if (buf_reserve(&w->path, it->len + 1) < 0) return -1;
            memcpy(w->path.p + w->path.n, name, it->len + 1);
            w->path.n += it->len;
        }
        int rc = by_path ? lstat(w->path.p, &w->st)
                         : fstatat(L->here.fd, name, &w->st, AT_SYMLINK_NOFOLLOW);
        if (rc < 0) {
            if (errno == ENOENT) continue;  /* vanished since the folder was listed */
            w->item_kind = 1; w->item_errno = errno; w->item_is_dir = 0;
            return 1;
        }
        const char *inner = rel + (L->cut < nrel ? L->cut : nrel);
        size_t ninner = nrel - (size_t)(inner - rel);
        mode_t mode = w->st.st_mode;
        if (S_ISREG(mode)) {
            if (!emit) continue;
            int x = excluded(L, inner, ninner, name, it->len, 0);
            if (x < 0) return -1;
            if (x) continue;
            w->item_kind = 0;
            return 1;
        }
        int source = L->prefix.n == 0;  /* the top level holds the sources */
        if (S_ISDIR(mode)) {
            if (!source) {
                int x = excluded(L, inner, ninner, name, it->len, 1);
                if (x < 0) return -1;
                if (x) continue;
            }
            Listing listing;
            Here here;
            int e = list_dir(w, name, w->path.p, w->path.n, L->here.fd, &listing, &here);
            if (e < 0) return -1;
            if (e > 0) {
                w->item_kind = 1; w->item_errno = e; w->item_is_dir = 1;
                return 1;
            }
            if (source) {
                PyObject *r = PyObject_CallFunction(w->enter_source, "y#y#", name,
                                                    (Py_ssize_t)it->len, w->path.p,
                                                    (Py_ssize_t)w->path.n);
                L = &w->stack[w->depth - 1];
                if (!r) {
                    listing_free(&listing);
                    here_close(w, &here);
                    return -1;
                }
                Py_DECREF(r);
            }
            /* emit, or (not emit and) touches: checked above for a folder */
            if (add_pending(L, name, it->len, &listing, &here) < 0) {
                listing_free(&listing);
                here_close(w, &here);
                return -1;
            }
            if (!emit) continue;
            w->item_kind = 0;
            return 1;
        }
        if (!emit) continue;
        if (!source) {
            int x = excluded(L, inner, ninner, name, it->len, 0);
            if (x < 0) return -1;
            if (x) continue;
        }
        w->item_kind = 0;
        return 1;
    }
    return 0;
}

/* ---- the catalog side -------------------------------------------------------------- */

/* 1 when the statement stands on a row, 0 at the end, -1 on an error (raised). */
static int cur_row(Walk *w) {
    if (w->row_state == 0) {
        int rc = sqlite3_step(w->stmt);
        if (rc == SQLITE_ROW) {
            if (sqlite3_column_count(w->stmt) < R_COLS ||
                sqlite3_column_type(w->stmt, R_PATH) != SQLITE_BLOB) {
                PyErr_SetString(PyExc_TypeError, "rows must have SIG_SELECT's columns");
                return -1;
            }
            w->row_state = 1;
        } else if (rc == SQLITE_DONE) {
            w->row_state = 2;
        } else {
            PyErr_Format(PyExc_OSError, "reading the catalog %s failed: %s", w->db_name,
                         sqlite3_errmsg(w->db));
            return -1;
        }
    }
    return w->row_state == 1;
}

static int col_is(Walk *w, int col, long long v) {
    return sqlite3_column_type(w->stmt, col) == SQLITE_INTEGER &&
           sqlite3_column_int64(w->stmt, col) == v;
}

static int col_is_u(Walk *w, int col, unsigned long long v) {
    return sqlite3_column_type(w->stmt, col) == SQLITE_INTEGER &&
           (unsigned long long)sqlite3_column_int64(w->stmt, col) == v;
}

static int ns_of(struct timespec t, long long *out) {
    long long s;
    if (__builtin_mul_overflow((long long)t.tv_sec, 1000000000LL, &s)) return 0;
    return !__builtin_add_overflow(s, (long long)t.tv_nsec, out);
}

/* True when the row says exactly what Entry.signature() of this entry would: only for
 * a regular file with one name and a folder; anything else goes to Python. */
static int same_signature(Walk *w) {
    const struct stat *st = &w->st;
    int file = S_ISREG(st->st_mode);
    if (!(file && st->st_nlink <= 1) && !S_ISDIR(st->st_mode)) return 0;
    if (sqlite3_column_type(w->stmt, R_KIND) != SQLITE_TEXT ||
        sqlite3_column_bytes(w->stmt, R_KIND) != 1 ||
        sqlite3_column_text(w->stmt, R_KIND)[0] != (file ? 'f' : 'd'))
        return 0;
    long long mtime, ctime;
    if (!ns_of(st->st_mtim, &mtime) || !ns_of(st->st_ctim, &ctime)) return 0;
    return col_is(w, R_SIZE, file ? (long long)st->st_size : 0) &&
           col_is(w, R_MTIME, mtime) && col_is(w, R_CTIME, ctime) &&
           col_is_u(w, R_INO, (unsigned long long)st->st_ino) &&
           col_is(w, R_MODE, (long long)(st->st_mode & 07777)) &&
           col_is_u(w, R_UID, (unsigned long long)st->st_uid) &&
           col_is_u(w, R_GID, (unsigned long long)st->st_gid) &&
           sqlite3_column_type(w->stmt, R_TARGET) == SQLITE_NULL &&
           col_is(w, R_RDEV, 0) &&
           sqlite3_column_type(w->stmt, R_LINK_TO) == SQLITE_NULL;
}

/* The current row as Python's sqlite3 module would give it. */
static PyObject *row_obj(Walk *w) {
    int n = sqlite3_column_count(w->stmt);
    PyObject *t = PyTuple_New(n);
    if (!t) return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *v;
        switch (sqlite3_column_type(w->stmt, i)) {
        case SQLITE_INTEGER:
            v = PyLong_FromLongLong(sqlite3_column_int64(w->stmt, i));
            break;
        case SQLITE_FLOAT:
            v = PyFloat_FromDouble(sqlite3_column_double(w->stmt, i));
            break;
        case SQLITE_TEXT:
            v = PyUnicode_FromStringAndSize((const char *)sqlite3_column_text(w->stmt, i),
                                            sqlite3_column_bytes(w->stmt, i));
            break;
        case SQLITE_BLOB:
            v = PyBytes_FromStringAndSize(sqlite3_column_blob(w->stmt, i),
                                          sqlite3_column_bytes(w->stmt, i));
            break;
        default:
            v = Py_NewRef(Py_None);
        }
        if (!v) { Py_DECREF(t); return NULL; }
        PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

static PyObject *ns_obj(struct timespec t) {
    long long v;
    if (ns_of(t, &v)) return PyLong_FromLongLong(v);
    PyObject *s = PyLong_FromLongLong((long long)t.tv_sec);
    PyObject *g = PyLong_FromLong(1000000000L);
    PyObject *n = PyLong_FromLong(t.tv_nsec);
    PyObject *m = s && g ? PyNumber_Multiply(s, g) : NULL;
    PyObject *r = m && n ? PyNumber_Add(m, n) : NULL;
    Py_XDECREF(s); Py_XDECREF(g); Py_XDECREF(n); Py_XDECREF(m);
    return r;
}

static PyObject *stat_obj(const struct stat *st) {
    PyObject *s = PyStructSequence_New(&StatType);
    if (!s) return NULL;
    PyObject *v[10] = {
        PyLong_FromUnsignedLong((unsigned long)st->st_mode),
        PyLong_FromUnsignedLongLong((unsigned long long)st->st_ino),
        PyLong_FromUnsignedLongLong((unsigned long long)st->st_dev),
        PyLong_FromUnsignedLongLong((unsigned long long)st->st_nlink),
        PyLong_FromUnsignedLong((unsigned long)st->st_uid),
        PyLong_FromUnsignedLong((unsigned long)st->st_gid),
        PyLong_FromLongLong((long long)st->st_size),
        ns_obj(st->st_mtim), ns_obj(st->st_ctim),
        PyLong_FromUnsignedLongLong((unsigned long long)st->st_rdev)};
    int bad = 0;
    for (int i = 0; i < 10; i++) {
        if (!v[i]) bad = 1;
        PyStructSequence_SET_ITEM(s, i, v[i] ? v[i] : Py_NewRef(Py_None));
    }
    if (bad) { Py_DECREF(s); return NULL; }
    return s;
}

/* ---- the iterator ------------------------------------------------------------------ */

/* Yields, in path order, (0, path, (stat, absolute path), row or None) for an entry,
 * (1, path, (errno, is_dir), row or None) for a path that could not be read, and
 * (2, path, None, row) for a row the walk did not find; None every TICK dropped pairs. */
static PyObject *walk_next(Walk *w) {
    for (;;) {
        if (!w->have_item && !w->scan_done) {
            int r = scan_next(w);
            if (r < 0) return NULL;
            if (r == 0) w->scan_done = 1;
            else w->have_item = 1;
        }
        int row = cur_row(w);
        if (row < 0) return NULL;
        if (!w->have_item && !row) return NULL;
        int c = 1;
        if (row && w->have_item)
            c = cmp_bytes(sqlite3_column_blob(w->stmt, R_PATH),
                          (size_t)sqlite3_column_bytes(w->stmt, R_PATH), w->rel.p, w->rel.n);
        if (row && (!w->have_item || c < 0)) {
            PyObject *r = row_obj(w);
            w->row_state = 0;
            return r ? Py_BuildValue("(iOON)", 2, PyTuple_GET_ITEM(r, R_PATH), Py_None, r)
                     : NULL;
        }
        int same = row && c == 0;
        if (same && w->item_kind == 0 && same_signature(w)) {
            w->have_item = 0;
            w->row_state = 0;
            w->same++;
            if (S_ISREG(w->st.st_mode)) {
                w->files++;
                w->nbytes += (long long)w->st.st_size;
            }
            if (++w->since_tick == TICK) {
                w->since_tick = 0;
                if (PyErr_CheckSignals() < 0) return NULL;
                Py_RETURN_NONE;
            }
            continue;
        }
        PyObject *payload, *r = Py_NewRef(Py_None);
        if (same) {
            Py_SETREF(r, row_obj(w));
            if (!r) return NULL;
            w->row_state = 0;
        }
        if (w->item_kind == 0) {
            PyObject *st = stat_obj(&w->st);
            payload = st ? Py_BuildValue("(Ny#)", st, w->path.p, (Py_ssize_t)w->path.n) : NULL;
        } else {
            payload = Py_BuildValue("(ii)", w->item_errno, w->item_is_dir);
        }
        w->have_item = 0;
        if (!payload) { Py_DECREF(r); return NULL; }
        return Py_BuildValue("(iy#NN)", w->item_kind, w->rel.p, (Py_ssize_t)w->rel.n,
                             payload, r);
    }
}

static void walk_dealloc(Walk *w) {
    while (w->depth) level_free(w, &w->stack[--w->depth]);
    free(w->stack);
    free(w->rel.p);
    free(w->path.p);
    free(w->scratch.p);
    sqlite3_finalize(w->stmt);
    sqlite3_close(w->db);
    free(w->db_name);
    Py_XDECREF(w->lo);
    Py_XDECREF(w->hi);
    Py_XDECREF(w->matcher_for);
    Py_XDECREF(w->enter_source);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

/* Open the catalog read-only and start the query for [lo, hi): ?1 is lo, ?2 hi. */
static int open_rows(Walk *w, const char *file, const char *sql) {
    w->db_name = strdup(file);
    if (!w->db_name) { PyErr_NoMemory(); return -1; }
    int rc = sqlite3_open_v2(file, &w->db, SQLITE_OPEN_READONLY, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(w->db, 5000);  /* as Python's sqlite3.connect */
        rc = sqlite3_prepare_v2(w->db, sql, -1, &w->stmt, NULL);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_blob(w->stmt, 1, PyBytes_AS_STRING(w->lo),
                               (int)PyBytes_GET_SIZE(w->lo), SQLITE_TRANSIENT);
    if (rc == SQLITE_OK && w->hi != Py_None)
        rc = sqlite3_bind_blob(w->stmt, 2, PyBytes_AS_STRING(w->hi),
                               (int)PyBytes_GET_SIZE(w->hi), SQLITE_TRANSIENT);
    if (rc != SQLITE_OK) {
        PyErr_Format(PyExc_OSError, "opening the catalog %s failed: %s", file,
                     w->db ? sqlite3_errmsg(w->db) : sqlite3_errstr(rc));
        return -1;
    }
    return 0;
}

static int walk_init(Walk *w, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"sources", "lo", "hi", "matcher_for", "enter_source", "db_file",
                         "sql", "max_held", NULL};
    PyObject *sources, *lo, *hi, *matcher_for, *enter_source;
    const char *db_file, *sql;
    int max_held;
    if (w->stack) {
        PyErr_SetString(PyExc_RuntimeError, "a Walk is set up once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!OOOyyi", kw, &PyList_Type, &sources,
                                     &PyBytes_Type, &lo, &hi, &matcher_for, &enter_source,
                                     &db_file, &sql, &max_held))
        return -1;
    if (hi != Py_None && !PyBytes_Check(hi)) {
        PyErr_SetString(PyExc_TypeError, "hi must be bytes or None");
        return -1;
    }
    w->lo = Py_NewRef(lo);
    w->hi = Py_NewRef(hi);
    w->matcher_for = Py_NewRef(matcher_for);
    w->enter_source = Py_NewRef(enter_source);
    w->max_held = max_held;
    if (open_rows(w, db_file, sql) < 0) return -1;
    Listing top;
    memset(&top, 0, sizeof top);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(sources); i++) {
        PyObject *s = PyList_GET_ITEM(sources, i);
        const char *name, *path;
        Py_ssize_t nn, np;
        if (!PyArg_ParseTuple(s, "y#y#", &name, &nn, &path, &np) ||
            listing_add(&top, name, (size_t)nn, path, (size_t)np, 1) < 0) {
            listing_free(&top);
            return -1;
        }
    }
    Here nowhere;
    memset(&nowhere, 0, sizeof nowhere);
    nowhere.fd = -1;
    return push_level(w, "", 0, &top, &nowhere);
}

static PyMemberDef walk_members[] = {
    {"same", T_LONGLONG, offsetof(Walk, same), READONLY, "pairs dropped as unchanged"},
    {"files", T_LONGLONG, offsetof(Walk, files), READONLY, "of which regular files"},
    {"nbytes", T_LONGLONG, offsetof(Walk, nbytes), READONLY, "and their bytes"},
    {"held", T_INT, offsetof(Walk, held), READONLY, "folders held open now"},
    {NULL}};

static PyTypeObject WalkType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "twofold.fsinfo._walk.Walk",
    .tp_basicsize = sizeof(Walk),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Walk(sources, lo, hi, matcher_for, enter_source, db_file, sql, max_held): "
              "the walk of scan.Scanner aligned with catalog rows, equal pairs dropped.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)walk_init,
    .tp_dealloc = (destructor)walk_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)walk_next,
    .tp_members = walk_members,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_walk",
    .m_doc = "The walk of fsinfo/scan.py in C, aligned with the catalog (see fastwalk.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__walk(void) {
    if (PyType_Ready(&WalkType) < 0) return NULL;
    if (PyStructSequence_InitType2(&StatType, &stat_desc) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "Walk", (PyObject *)&WalkType) < 0 ||
        PyModule_AddObjectRef(m, "stat_result", (PyObject *)&StatType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
