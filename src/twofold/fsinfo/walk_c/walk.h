/* What the parts of the walk in C share (see module.c for what the module is). */

#ifndef TWOFOLD_WALK_H
#define TWOFOLD_WALK_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#define OPEN_DIR (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
#define TICK 4096 /* dropped pairs between progress ticks (Py_None) */

/* Where a catalog row (a tuple of SIG_SELECT in store/rows.py) keeps what we compare. */
enum { R_PATH = 1, R_KIND, R_SIZE, R_MTIME, R_CTIME, R_INO, R_MODE, R_UID, R_GID,
       R_TARGET, R_RDEV, R_LINK_TO, R_COLS };

typedef struct { char *p; size_t n, cap; } Buf;

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
    int filtered;             /* first[] holds excludes.first_bytes' table */
    unsigned char first[256];
    size_t cut;               /* where the path inside the source starts */
    Here here;
} Level;

typedef struct {
    PyObject_HEAD
    PyObject *lo, *hi;                 /* bytes; hi may be Py_None */
    PyObject *matcher_for, *enter_source;
    sqlite3 *db;
    sqlite3_stmt *stmt;
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

static inline int cmp_bytes(const char *a, size_t na, const char *b, size_t nb) {
    int r = memcmp(a, b, na < nb ? na : nb);
    if (r) return r;
    return na < nb ? -1 : na > nb;
}

static inline int starts_with(const char *s, size_t ns, const char *p, size_t np) {
    return np <= ns && memcmp(s, p, np) == 0;
}

/* listing.c: buffers, folder listings, the order of a level's keys */
int tw_buf_reserve(Buf *b, size_t more);
int tw_buf_set(Buf *b, const char *a, size_t na, const char *c, size_t nc, int slash);
void tw_listing_free(Listing *l);
int tw_listing_add(Listing *l, const char *name, size_t len, const char *abs,
                   size_t abs_len, char is_dir);
void tw_here_close(Walk *w, Here *h);
int tw_list_dir(Walk *w, const char *name, const char *path, size_t path_len,
                int parent_fd, Listing *out, Here *here);
void tw_sort_keys(const Listing *listing, Key *keys, size_t n);

/* scan.c: the walk itself */
void tw_level_free(Walk *w, Level *L);
int tw_push_level(Walk *w, const char *prefix, size_t n, Listing *listing, Here *here);
int tw_scan_next(Walk *w);

/* rows.c: the catalog's open rows */
int tw_open_rows(Walk *w, const char *file, const char *sql);
int tw_cur_row(Walk *w);
int tw_same_signature(Walk *w);
PyObject *tw_row_obj(Walk *w);
int tw_ns_of(struct timespec t, long long *out);

/* module.c: Python values */
PyObject *tw_ns_obj(struct timespec t);
PyObject *tw_struct_fill(PyObject *s, PyObject **v, int n);

/* folder.c: one folder's entries for file-level images */
PyObject *tw_scan_folder(PyObject *self, PyObject *args);
PyObject *tw_os_stat(PyTypeObject *type, const struct stat *st);

/* read.c: small files read whole for file-level images */
PyObject *tw_read_small(PyObject *self, PyObject *args);

#endif
