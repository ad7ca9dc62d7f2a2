using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using DeltaMigrate.Engine;
using DeltaMigrate.Engine.Vm;

namespace DeltaMigrate.Module.Infrastructure;

/// <summary>
/// Tab completion of VM names for -Name and -Destination: the live VMs of the run directory, read
/// from their records only (no QMP round trip, so completion stays instant while VMs migrate).
/// </summary>
public sealed class VmNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        IEnumerable<VmRecord> records;
        try
        {
            // A pattern with a wildcard never throws NotFound: no match is an empty list.
            records = VmResolver.Find(wordToComplete.Trim('\'', '"') + "*");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or EngineException)
        {
            yield break;   // a run directory we cannot read or do not trust: nothing to offer
        }

        foreach (var r in records.OrderBy(r => r.Name, StringComparer.OrdinalIgnoreCase))
        {
            var text = r.Name.All(c => char.IsLetterOrDigit(c) || c is '-' or '_' or '.') ? r.Name : $"'{r.Name.Replace("'", "''")}'";
            yield return new CompletionResult(text, r.Name, CompletionResultType.ParameterValue,
                $"{r.Name}: {r.MemoryBytes / (1024 * 1024)} MiB, {r.Machine}, pid {r.Pid}");
        }
    }
}
