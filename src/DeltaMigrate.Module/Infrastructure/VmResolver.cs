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

    public static VmRecord Single(string name) => Find(name).FirstOrDefault() ?? throw NotFound(name);

    public static EngineException NotFound(string name) => new("VMNotFound", ErrorKind.NotFound,
        $"No running VM named '{name}' in {RunDirectory.Path}. List VMs with Get-KvmVM, or start one with Start-KvmVM.")
    { Target = name };
}
