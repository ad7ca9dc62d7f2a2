using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Loader;

namespace DeltaMigrate.Reports;

/// <summary>
/// Finds SkiaSharp's and HarfBuzzSharp's native libraries under runtimes/&lt;rid&gt;/native next to the
/// assemblies. An application finds them through its .deps.json; a PowerShell binary module has no
/// .deps.json of its own, so pwsh only looks beside the DLL. The handler runs only when the default
/// probing has already failed, and only for these two libraries.
/// </summary>
internal static class NativeAssets
{
    private static readonly string[] Libraries = ["libSkiaSharp", "libHarfBuzzSharp"];
    private static int _registered;

    public static void Register()
    {
        if (Interlocked.Exchange(ref _registered, 1) == 0)
        {
            var context = AssemblyLoadContext.GetLoadContext(typeof(NativeAssets).Assembly) ?? AssemblyLoadContext.Default;
            context.ResolvingUnmanagedDll += Resolve;
        }
    }

    private static IntPtr Resolve(Assembly assembly, string name)
    {
        var library = Libraries.FirstOrDefault(l => name.StartsWith(l, StringComparison.Ordinal));
        var directory = Path.GetDirectoryName(assembly.Location);
        if (library is null || string.IsNullOrEmpty(directory))
        {
            return IntPtr.Zero;
        }

        foreach (var rid in RuntimeIdentifiers())
        {
            var path = Path.Combine(directory, "runtimes", rid, "native", library + Extension());
            if (File.Exists(path) && NativeLibrary.TryLoad(path, out var handle))
            {
                return handle;
            }
        }

        return IntPtr.Zero;
    }

    private static IEnumerable<string> RuntimeIdentifiers()
    {
        var arch = RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant();
        yield return RuntimeInformation.RuntimeIdentifier;
        if (OperatingSystem.IsLinux())
        {
            yield return $"linux-{arch}";
            yield return $"linux-musl-{arch}";
        }
        else if (OperatingSystem.IsMacOS())
        {
            yield return "osx";
        }
        else if (OperatingSystem.IsWindows())
        {
            yield return $"win-{arch}";
        }
    }

    private static string Extension() =>
        OperatingSystem.IsWindows() ? ".dll" : OperatingSystem.IsMacOS() ? ".dylib" : ".so";
}
