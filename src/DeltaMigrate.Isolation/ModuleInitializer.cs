using System.Management.Automation;
using System.Reflection;
using System.Runtime.Loader;

namespace DeltaMigrate.Isolation;

/// <summary>
/// Dependency isolation, the pattern PowerShell's documentation gives for assembly conflicts: the
/// cmdlet assembly (DeltaMigrate.dll) stays in the default context and references only PowerShell and
/// our own engine-facing assemblies; those (DeltaMigrate.Engine, DeltaMigrate.Reports) are not beside
/// it, so the default context cannot find them and raises <see cref="AssemblyLoadContext.Resolving"/>,
/// and this handler loads them into <see cref="DependencyLoadContext"/>. Their dependencies then bind
/// inside that context only. This assembly is a nested module imported before DeltaMigrate.dll,
/// because PowerShell loads the cmdlet types (engine-typed parameters) before running any initializer of theirs.
/// </summary>
public sealed class ModuleInitializer : IModuleAssemblyInitializer, IModuleAssemblyCleanup
{
    /// <summary>The folder beside DeltaMigrate.dll that PowerShell does not probe.</summary>
    internal const string DependencyFolder = "dependencies";

    private static readonly string[] OwnAssemblies = ["DeltaMigrate.Engine", "DeltaMigrate.Reports"];

    private static readonly Lazy<DependencyLoadContext> Context = new(() =>
        new DependencyLoadContext(Path.Combine(Path.GetDirectoryName(typeof(ModuleInitializer).Assembly.Location)!, DependencyFolder)));

    public void OnImport()
    {
        // Imported again (-Force, a thread job's runspace): one handler, never two.
        AssemblyLoadContext.Default.Resolving -= Resolve;
        AssemblyLoadContext.Default.Resolving += Resolve;
    }

    public void OnRemove(PSModuleInfo psModuleInfo) => AssemblyLoadContext.Default.Resolving -= Resolve;

    // Answers only for our own assemblies: another module's missing dependency is none of our business.
    private static Assembly? Resolve(AssemblyLoadContext context, AssemblyName assemblyName) =>
        OwnAssemblies.Contains(assemblyName.Name, StringComparer.Ordinal) ? Context.Value.LoadFromAssemblyName(assemblyName) : null;
}
