using System.Reflection;
using System.Runtime.Loader;

namespace DeltaMigrate.Isolation;

/// <summary>
/// The module's own load context: the engine, the reports and every library they use load from the
/// dependencies folder, whatever versions other modules put into PowerShell's default context. What
/// is not in that folder (the framework, System.Management.Automation, this cmdlet assembly) falls
/// through to the default context, so those types stay shared. SkiaSharp's natives are found by the
/// reports themselves under dependencies/runtimes/&lt;rid&gt;/native (NativeAssets).
/// </summary>
internal sealed class DependencyLoadContext(string directory) : AssemblyLoadContext("DeltaMigrate", isCollectible: false)
{
    public string Directory { get; } = directory;

    protected override Assembly? Load(AssemblyName assemblyName)
    {
        var path = Path.Combine(Directory, assemblyName.Name + ".dll");
        return File.Exists(path) ? LoadFromAssemblyPath(path) : null;
    }
}
