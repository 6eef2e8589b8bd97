/*
 * Minimal stand-in for Windows' bcryptprimitives.dll, for running Rust test
 * binaries under Wine 8 (Debian 12), which does not ship this DLL.
 *
 * Rust >= 1.78 std (x86_64-pc-windows-gnu/msvc) imports ProcessPrng from
 * bcryptprimitives.dll at load time; without it every test .exe dies before
 * main() with exit status 53 (STATUS_DLL_NOT_FOUND-style loader failure).
 *
 * ProcessPrng is implemented on top of SystemFunction036 (RtlGenRandom) from
 * advapi32, which Wine does implement. Built by .ci/windows/setup.sh with
 * mingw-w64 and copied into the Wine prefix's drive_c/windows/system32.
 * Only for CI under Wine: never ship this to real Windows.
 */
#include <windows.h>

/* RtlGenRandom: BOOLEAN NTAPI SystemFunction036(PVOID, ULONG), in advapi32. */
__declspec(dllimport) BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

/* BOOL WINAPI ProcessPrng(PBYTE pbData, SIZE_T cbData); always returns TRUE. */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE pbData, SIZE_T cbData)
{
    while (cbData > 0) {
        /* SystemFunction036 takes a ULONG length: feed it in <= 1 GiB chunks. */
        ULONG chunk = cbData > 0x40000000u ? 0x40000000u : (ULONG)cbData;
        if (!SystemFunction036(pbData, chunk)) {
            /* Real ProcessPrng cannot fail; make a failure loud, not silent. */
            RaiseFailFastException(NULL, NULL, 0);
        }
        pbData += chunk;
        cbData -= chunk;
    }
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst; (void)reason; (void)reserved;
    return TRUE;
}
