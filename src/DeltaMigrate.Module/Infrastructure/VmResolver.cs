using System.Management.Automation;
using DeltaMigrate.Engine;
using DeltaMigrate.Engine.Vm;

namespace DeltaMigrate.Module.Infrastructure;

/// <summary>Finds the VMs a -Name names, in the run directory.</summary>
internal static class VmResolver
{
    /// <summary>The default run directory, refused (RunDirectoryInsecure) unless it is ours alone: its records are trusted.</summary>
    public static RunDirectory RunDirectory => RunDirectory.Default.EnsureSecure();

    /// <summary>Records whose name matches; a name without wildcards that matches nothing is an error.</summary>
    public static IEnumerable<VmRecord> Find(string pattern)
    {
        var wildcard = WildcardPattern.Get(pattern, WildcardOptions.IgnoreCase);
        var found = RunDirectory.LoadAll().Where(r => wildcard.IsMatch(r.Name) && QemuLauncher.IsAlive(r.Pid)).ToList();
        if (found.Count == 0 && !WildcardPattern.ContainsWildcardCharacters(pattern))
        {
            throw NotFound(pattern);
        }

        return found;
    }

    /// <summary>The one VM a name names; a pattern that matches several is an error that lists them (never the first one silently).</summary>
    public static VmRecord Single(string name)
    {
        var found = Find(name).ToList();
        return found.Count switch
        {
            0 => throw NotFound(name),
            1 => found[0],
            _ => throw new EngineException("AmbiguousVMName", ErrorKind.InvalidArgument,
                $"'{name}' matches {found.Count} VMs ({string.Join(", ", found.Select(r => r.Name))}) where one is expected. Name one, or pipe them: Get-KvmVM '{name}' | ...")
            { Target = name },
        };
    }

    public static EngineException NotFound(string name) => new("VMNotFound", ErrorKind.NotFound,
        $"No running VM named '{name}' in {RunDirectory.Path}. List VMs with Get-KvmVM, or start one with Start-KvmVM.")
    { Target = name };
}
