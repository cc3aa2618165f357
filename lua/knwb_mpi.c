/* knwb_mpi.c: the `knwb.mpi` module: the few MPI calls a sharded experiment needs.
 *
 * knwb is built with MPI when Debian's OpenMPI development package is installed (the Makefile
 * defines KNWB_MPI). MPI is initialised only when the process was started by a launcher (mpirun,
 * mpiexec, srun): run by hand, knwb is one rank and never touches MPI, so it behaves exactly as a
 * build without it. Messages are Lua strings (the callers serialise with knwb.json), sent whole
 * with a probe for the length, so no size is ever guessed.
 *
 *   mpi.init()              -> rank, size        (idempotent; 0, 1 without a launcher)
 *   mpi.rank(), mpi.size()  -> integer
 *   mpi.available()         -> whether this build has MPI
 *   mpi.local_size()        -> ranks on this host;  mpi.cores() -> cores this process may use
 *   mpi.blas_threads(n)     -> sets this rank's OpenBLAS threads
 *   mpi.host()              -> this rank's host name
 *   mpi.send(dest, tag, s)
 *   mpi.recv([source], [tag]) -> s, source, tag   (nil source/tag: any; waits without spinning)
 *   mpi.poll([source], [tag]) -> s, source, tag, or nil when nothing is waiting
 *   mpi.isend(dest, tag, s) -> request; request:test() -> done?, request:wait()
 *   mpi.barrier()
 *   mpi.abort(code)         -> ends every rank (used when one rank fails, so no rank waits forever)
 *   mpi.finalize()
 * A rank that fails with an error calls knwb_mpi_exit(status) from the host (lua/main.c), which
 * aborts the whole job instead of leaving the other ranks blocked in a receive. */
#include <cblas.h>
#include <lauxlib.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef KNWB_MPI
#include <mpi.h>
#endif

static int g_started;  /* MPI_Init was called by us */
static int g_rank, g_size = 1, g_local_size = 1;  /* local: ranks on this host */

/* Whether a launcher started this process: OpenMPI's mpirun, PMIx (mpirun, srun --mpi=pmix),
 * PMI (MPICH-style launchers, srun --mpi=pmi2). */
static int launched(void) {
    static const char *const vars[] = { "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", NULL };
    for (int i = 0; vars[i]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

static int l_init(lua_State *L) {
#ifdef KNWB_MPI
    if (!g_started && launched()) {
        int provided = 0;
        /* OpenBLAS runs its own threads; only the main thread calls MPI. */
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return luaL_error(L, "mpi.init: MPI_Init_thread failed");
        g_started = 1;
        MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
        MPI_Comm_size(MPI_COMM_WORLD, &g_size);
        MPI_Comm local;
        if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) == MPI_SUCCESS) {
            MPI_Comm_size(local, &g_local_size);
            MPI_Comm_free(&local);
        }
    }
#endif
    lua_pushinteger(L, g_rank);
    lua_pushinteger(L, g_size);
    return 2;
}

static int l_rank(lua_State *L) { lua_pushinteger(L, g_rank); return 1; }
static int l_size(lua_State *L) { lua_pushinteger(L, g_size); return 1; }

static int l_local_size(lua_State *L) { lua_pushinteger(L, g_local_size); return 1; }

/* mpi.cores() -> the cores this process may run on (its CPU affinity set). */
static int l_cores(lua_State *L) {
    cpu_set_t set;
    int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    lua_pushinteger(L, n > 0 ? n : 1);
    return 1;
}

/* mpi.blas_threads(n): the OpenBLAS thread count of this rank. */
static int l_blas_threads(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 1 || n > 1024) return luaL_error(L, "mpi.blas_threads: %I threads out of range 1..1024", (LUAI_UACINT)n);
    openblas_set_num_threads((int)n);
    return 0;
}

static int l_available(lua_State *L) {
#ifdef KNWB_MPI
    lua_pushboolean(L, 1);
#else
    lua_pushboolean(L, 0);
#endif
    return 1;
}

static int l_host(lua_State *L) {
    char name[256];
    if (gethostname(name, sizeof name) != 0) strcpy(name, "unknown");
    name[sizeof name - 1] = '\0';
    lua_pushstring(L, name);
    return 1;
}

#ifdef KNWB_MPI
static void need_started(lua_State *L, const char *who) {
    if (!g_started) luaL_error(L, "%s: MPI is not running (one rank; call mpi.init() under mpirun or srun)", who);
}

static int check_rank_arg(lua_State *L, int arg, const char *who) {
    lua_Integer r = luaL_checkinteger(L, arg);
    if (r < 0 || r >= g_size) luaL_error(L, "%s: rank %I out of range 0..%d", who, (LUAI_UACINT)r, g_size - 1);
    return (int)r;
}

static int check_tag_arg(lua_State *L, int arg, const char *who) {
    lua_Integer t = luaL_checkinteger(L, arg);
    if (t < 0 || t > 32767) luaL_error(L, "%s: tag %I out of range 0..32767", who, (LUAI_UACINT)t);
    return (int)t;
}
#endif

static int l_send(lua_State *L) {
#ifdef KNWB_MPI
    need_started(L, "mpi.send");
    int dest = check_rank_arg(L, 1, "mpi.send");
    int tag = check_tag_arg(L, 2, "mpi.send");
    size_t n;
    const char *s = luaL_checklstring(L, 3, &n);
    if (n > INT_MAX) return luaL_error(L, "mpi.send: message of %zu bytes is over the 2 GiB MPI limit", n);
    if (MPI_Send(s, (int)n, MPI_BYTE, dest, tag, MPI_COMM_WORLD) != MPI_SUCCESS)
        return luaL_error(L, "mpi.send: MPI_Send to rank %d failed", dest);
    return 0;
#else
    return luaL_error(L, "mpi.send: this knwb was built without MPI (install libopenmpi-dev and rebuild)");
#endif
}

#ifdef KNWB_MPI
/* Receives the probed message whole: pushes the string, its source and tag. */
static int recv_probed(lua_State *L, MPI_Status *st) {
    int n = 0;
    MPI_Get_count(st, MPI_BYTE, &n);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, n > 0 ? (size_t)n : 1);
    if (MPI_Recv(p, n, MPI_BYTE, st->MPI_SOURCE, st->MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS)
        return luaL_error(L, "mpi.recv: MPI_Recv from rank %d failed", st->MPI_SOURCE);
    luaL_pushresultsize(&b, (size_t)n);
    lua_pushinteger(L, st->MPI_SOURCE);
    lua_pushinteger(L, st->MPI_TAG);
    return 3;
}

static void source_tag(lua_State *L, const char *who, int *src, int *tag) {
    *src = lua_isnoneornil(L, 1) ? MPI_ANY_SOURCE : check_rank_arg(L, 1, who);
    *tag = lua_isnoneornil(L, 2) ? MPI_ANY_TAG : check_tag_arg(L, 2, who);
}
#endif

/* Blocking receive. It waits by polling with short sleeps rather than in MPI_Probe, which
 * spins a core at 100% in OpenMPI: a rank that waits must leave the core to the ranks working. */
static int l_recv(lua_State *L) {
#ifdef KNWB_MPI
    need_started(L, "mpi.recv");
    int src, tag, flag = 0;
    source_tag(L, "mpi.recv", &src, &tag);
    MPI_Status st;
    long nap = 20000;  /* ns, doubling to 1 ms */
    for (;;) {
        if (MPI_Iprobe(src, tag, MPI_COMM_WORLD, &flag, &st) != MPI_SUCCESS) return luaL_error(L, "mpi.recv: MPI_Iprobe failed");
        if (flag) break;
        struct timespec ts = { 0, nap };
        nanosleep(&ts, NULL);
        if (nap < 1000000) nap *= 2;
    }
    return recv_probed(L, &st);
#else
    return luaL_error(L, "mpi.recv: this knwb was built without MPI (install libopenmpi-dev and rebuild)");
#endif
}

/* mpi.poll([source], [tag]) -> s, source, tag when a message is waiting, else nil. */
static int l_poll(lua_State *L) {
#ifdef KNWB_MPI
    need_started(L, "mpi.poll");
    int src, tag, flag = 0;
    source_tag(L, "mpi.poll", &src, &tag);
    MPI_Status st;
    if (MPI_Iprobe(src, tag, MPI_COMM_WORLD, &flag, &st) != MPI_SUCCESS) return luaL_error(L, "mpi.poll: MPI_Iprobe failed");
    if (!flag) { lua_pushnil(L); return 1; }
    return recv_probed(L, &st);
#else
    return luaL_error(L, "mpi.poll: this knwb was built without MPI (install libopenmpi-dev and rebuild)");
#endif
}

/* Non-blocking send: a request object keeps the string alive until the send completes, so a
 * worker goes on computing while its (large) result waits for the receiver. */
#define REQUEST "knwb.mpi.request"
typedef struct request {
#ifdef KNWB_MPI
    MPI_Request req;
#endif
    int done;
} request;

static int l_isend(lua_State *L) {
#ifdef KNWB_MPI
    need_started(L, "mpi.isend");
    int dest = check_rank_arg(L, 1, "mpi.isend");
    int tag = check_tag_arg(L, 2, "mpi.isend");
    size_t n;
    const char *s = luaL_checklstring(L, 3, &n);
    if (n > INT_MAX) return luaL_error(L, "mpi.isend: message of %zu bytes is over the 2 GiB MPI limit", n);
    request *r = lua_newuserdatauv(L, sizeof *r, 1);
    r->done = 0;
    lua_pushvalue(L, 3);
    lua_setiuservalue(L, -2, 1);  /* the string stays alive as long as the request */
    luaL_setmetatable(L, REQUEST);
    if (MPI_Isend(s, (int)n, MPI_BYTE, dest, tag, MPI_COMM_WORLD, &r->req) != MPI_SUCCESS)
        return luaL_error(L, "mpi.isend: MPI_Isend to rank %d failed", dest);
    return 1;
#else
    return luaL_error(L, "mpi.isend: this knwb was built without MPI (install libopenmpi-dev and rebuild)");
#endif
}

static int r_test(lua_State *L) {
    request *r = luaL_checkudata(L, 1, REQUEST);
#ifdef KNWB_MPI
    if (!r->done) {
        int flag = 0;
        if (MPI_Test(&r->req, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS) return luaL_error(L, "request:test: MPI_Test failed");
        r->done = flag;
    }
#endif
    lua_pushboolean(L, r->done);
    return 1;
}

static int r_wait(lua_State *L) {
    request *r = luaL_checkudata(L, 1, REQUEST);
#ifdef KNWB_MPI
    if (!r->done) {
        int flag = 0;
        long nap = 20000;
        while (!flag) {
            if (MPI_Test(&r->req, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS) return luaL_error(L, "request:wait: MPI_Test failed");
            if (!flag) {
                struct timespec ts = { 0, nap };
                nanosleep(&ts, NULL);
                if (nap < 1000000) nap *= 2;
            }
        }
        r->done = 1;
    }
#endif
    (void)r;
    return 0;
}

static int l_barrier(lua_State *L) {
#ifdef KNWB_MPI
    if (g_started && MPI_Barrier(MPI_COMM_WORLD) != MPI_SUCCESS) return luaL_error(L, "mpi.barrier failed");
#else
    (void)L;
#endif
    return 0;
}

static int l_abort(lua_State *L) {
    int code = (int)luaL_optinteger(L, 1, 1);
#ifdef KNWB_MPI
    if (g_started && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    exit(code);
}

static void finalize(void) {
#ifdef KNWB_MPI
    if (g_started) {
        int done = 0;
        MPI_Finalized(&done);
        if (!done) MPI_Finalize();
    }
#endif
    g_started = 0;
}

/* mpi.die(): SIGKILL to this process, for the tests of a rank lost mid-run. */
static int l_die(lua_State *L) {
    (void)L;
    raise(SIGKILL);
    return 0;
}

static int l_finalize(lua_State *L) { (void)L; finalize(); return 0; }

/* Called by the host when the script has ended: a failed rank ends the whole job. */
void knwb_mpi_exit(int status) {
#ifdef KNWB_MPI
    if (g_started && status != 0 && g_size > 1) MPI_Abort(MPI_COMM_WORLD, status);
#else
    (void)status;
#endif
    finalize();
}

static const luaL_Reg funcs[] = {
    { "init", l_init }, { "rank", l_rank }, { "size", l_size }, { "available", l_available },
    { "host", l_host }, { "send", l_send }, { "recv", l_recv }, { "barrier", l_barrier },
    { "abort", l_abort }, { "finalize", l_finalize }, { "poll", l_poll }, { "isend", l_isend },
    { "local_size", l_local_size }, { "die", l_die }, { "cores", l_cores }, { "blas_threads", l_blas_threads }, { NULL, NULL },
};
static const luaL_Reg request_methods[] = { { "test", r_test }, { "wait", r_wait }, { NULL, NULL } };

int luaopen_knwb_mpi(lua_State *L) {
    luaL_newmetatable(L, REQUEST);
    luaL_newlib(L, request_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    return 1;
}
