using System.Collections;
using System.Management.Automation;
using System.Text.Json;
using DeltaMigrate.Engine;
using DeltaMigrate.Engine.Qmp;
using DeltaMigrate.Engine.Vm;
using DeltaMigrate.Module.Infrastructure;

namespace DeltaMigrate.Module.Commands;

/// <summary>Runs any QMP command on a VM and outputs QEMU's reply as objects.</summary>
[Cmdlet(VerbsLifecycle.Invoke, "KvmQmp", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium, DefaultParameterSetName = "Name")]
[OutputType(typeof(PSObject))]
public sealed class InvokeKvmQmpCommand : EngineCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = "Name")]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    public string Name { get; set; } = "";

    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = "VM")]
    public VmInfo? VM { get; set; }

    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    public string Command { get; set; } = "";

    [Parameter(Position = 2)]
    public Hashtable? Arguments { get; set; }

    /// <summary>Seconds to wait for QEMU's reply.</summary>
    [Parameter]
    [Seconds]
    public TimeSpan Timeout { get; set; } = QmpClient.DefaultCommandTimeout;

    protected override void ProcessRecord()
    {
        try
        {
            var (name, socket) = VM is not null
                ? (VM.Name, VM.QuerySocket ?? VM.QmpPath)
                : (Name, VmResolver.Single(Name).QuerySocket);

            // Queries change nothing; anything else asks ShouldProcess.
            if (!Command.StartsWith("query-", StringComparison.Ordinal) && !ShouldProcess(name, $"QMP '{Command}'"))
            {
                return;
            }

            var arguments = Arguments?.Cast<DictionaryEntry>().ToDictionary(e => e.Key.ToString()!, e => Plain(e.Value));
            var reply = RunEngine(async stop =>
            {
                await using var qmp = await QmpClient.ConnectUnixAsync(socket, Logger, null, stop);
                return await qmp.ExecuteAsync(Command, arguments, Timeout, stop);
            });
            WriteObject(ToPowerShell(reply), enumerateCollection: true);
        }
        catch (QmpCommandException e)
        {
            WriteError(new ErrorRecord(e, "QmpCommandFailed", ErrorCategory.InvalidOperation, Command));
        }
        catch (Exception e) when (e is QmpException or IOException or System.Net.Sockets.SocketException)
        {
            WriteError(new ErrorRecord(e, "VMNotReachable", ErrorCategory.ConnectionError, VM?.Name ?? Name));
        }
        catch (Exception e) when (e is EngineException or TimeoutException)
        {
            WriteError(ToErrorRecord(e, VM?.Name ?? Name));
        }
    }

    /// <summary>PSObjects and nested hashtables become plain values System.Text.Json can write.</summary>
    private static object? Plain(object? value) => value switch
    {
        PSObject pso => Plain(pso.BaseObject),
        IDictionary dictionary => dictionary.Cast<DictionaryEntry>().ToDictionary(e => e.Key.ToString()!, e => Plain(e.Value)),
        string s => s,
        IEnumerable list => list.Cast<object?>().Select(Plain).ToArray(),
        _ => value,
    };

    /// <summary>JSON objects become PSCustomObjects, arrays object[], numbers long or double.</summary>
    internal static object? ToPowerShell(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.Object => ToPSObject(element),
        JsonValueKind.Array => element.EnumerateArray().Select(ToPowerShell).ToArray(),
        JsonValueKind.String => element.GetString(),
        JsonValueKind.Number => element.TryGetInt64(out var n) ? n : element.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => null,
    };

    private static PSObject ToPSObject(JsonElement element)
    {
        var result = new PSObject();
        foreach (var property in element.EnumerateObject())
        {
            result.Properties.Add(new PSNoteProperty(property.Name, ToPowerShell(property.Value)));
        }

        return result;
    }
}
