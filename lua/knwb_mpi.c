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
 *   mpi.host()              -> this rank's host name
 *   mpi.send(dest, tag, s)
 *   mpi.recv([source], [tag]) -> s, source, tag   (nil source/tag: any)
 *   mpi.barrier()
 *   mpi.abort(code)         -> ends every rank (used when one rank fails, so no rank waits forever)
 *   mpi.finalize()
 * A rank that fails with an error calls knwb_mpi_exit(status) from the host (lua/main.c), which
 * aborts the whole job instead of leaving the other ranks blocked in a receive. */
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef KNWB_MPI
#include <mpi.h>
#endif

static int g_started;  /* MPI_Init was called by us */
static int g_rank, g_size = 1;

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
    }
#endif
    lua_pushinteger(L, g_rank);
    lua_pushinteger(L, g_size);
    return 2;
}

static int l_rank(lua_State *L) { lua_pushinteger(L, g_rank); return 1; }
static int l_size(lua_State *L) { lua_pushinteger(L, g_size); return 1; }

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

static int l_recv(lua_State *L) {
#ifdef KNWB_MPI
    need_started(L, "mpi.recv");
    int src = lua_isnoneornil(L, 1) ? MPI_ANY_SOURCE : check_rank_arg(L, 1, "mpi.recv");
    int tag = lua_isnoneornil(L, 2) ? MPI_ANY_TAG : check_tag_arg(L, 2, "mpi.recv");
    MPI_Status st;
    if (MPI_Probe(src, tag, MPI_COMM_WORLD, &st) != MPI_SUCCESS) return luaL_error(L, "mpi.recv: MPI_Probe failed");
    int n = 0;
    MPI_Get_count(&st, MPI_BYTE, &n);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, n > 0 ? (size_t)n : 1);
    if (MPI_Recv(p, n, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS)
        return luaL_error(L, "mpi.recv: MPI_Recv from rank %d failed", st.MPI_SOURCE);
    luaL_pushresultsize(&b, (size_t)n);
    lua_pushinteger(L, st.MPI_SOURCE);
    lua_pushinteger(L, st.MPI_TAG);
    return 3;
#else
    return luaL_error(L, "mpi.recv: this knwb was built without MPI (install libopenmpi-dev and rebuild)");
#endif
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
    { "abort", l_abort }, { "finalize", l_finalize }, { NULL, NULL },
};

int luaopen_knwb_mpi(lua_State *L) {
    luaL_newlib(L, funcs);
    return 1;
}
