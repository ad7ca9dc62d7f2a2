<#
.SYNOPSIS
    Drains a host for maintenance: live-migrates every VM whose name matches, one at a time,
    logs each result to a CSV file, and stops at the first failure (the VM that failed keeps
    running here; the ones not yet attempted are left alone).

.EXAMPLE
    # Nightly: each VM goes to a Receive-KvmVM that host2's automation started; it saved each
    # ready object (Endpoint, Token) where only root can read it (the token is a secret).
    ./Invoke-KvmHostDrain.ps1 -Name 'web*' -LogPath /var/log/deltamigrate/drain.csv -Destination {
        param($vm) Import-Clixml "/root/deltamigrate/ready/$($vm.Name).xml"
    }

.EXAMPLE
    # On one host (tests, rehearsals): a waiting VM for each source, same memory and machine.
    ./Invoke-KvmHostDrain.ps1 -Name 'app-*' -LogPath ./drain.csv -Destination {
        param($vm) Start-KvmVM -Name "$($vm.Name)-new" -Memory $vm.MemoryBytes -Machine $vm.Machine -Incoming
    }

.NOTES
    From cron or a systemd unit, start pwsh with DOTNET_ThreadPool_UnfairSemaphoreSpinLimit=0 in its
    environment: on slow links it roughly halves the engine's CPU (docs/performance.md).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    # Wildcard pattern of the VMs to drain.
    [Parameter(Mandatory)] [string] $Name,

    # Returns where a VM goes, given the VM: a waiting VM (object or name), or the ready object
    # Receive-KvmVM printed on the other host (Endpoint and Token; any -Compress mode).
    [Parameter(Mandatory)] [scriptblock] $Destination,

    # CSV file that receives one row per VM (appended, so a night's log keeps every run).
    [Parameter(Mandatory)] [string] $LogPath,

    [ValidateSet('Delta', 'Lz4', 'Native', 'None')] [string] $Compress = 'Delta',

    # Per VM: cancel a migration that has not converged by then.
    [TimeSpan] $Timeout = [TimeSpan]::FromMinutes(10)
)

$ErrorActionPreference = 'Stop'
# A DeltaMigrate already imported (e.g. the installed package) is used as it is.
if (-not (Get-Module DeltaMigrate)) { Import-Module (Join-Path $PSScriptRoot '../DeltaMigrate.psd1') }

function Write-Log($VM, $Target, $Result, [string] $ErrorText) {
    [pscustomobject]@{
        Time          = (Get-Date).ToString('o')
        VM            = $VM.Name
        Destination   = "$Target"
        Status        = if ($Result) { $Result.Status } else { 'Failed' }
        TotalSeconds  = if ($Result) { [math]::Round($Result.TotalTime.TotalSeconds, 2) } else { $null }
        DowntimeMs    = if ($Result) { [math]::Round($Result.Downtime.TotalMilliseconds) } else { $null }
        TransferredMB = if ($Result) { [math]::Round($Result.BytesTransferred / 1MB, 1) } else { $null }
        Rounds        = if ($Result) { $Result.DirtySyncCount } else { $null }
        Error         = $ErrorText
    } | Export-Csv -Path $LogPath -Append -NoTypeInformation
}

function Get-Label($Target) {
    if ($Target -is [string] -or $null -eq $Target) { "$Target" }
    elseif ($Target.PSObject.Properties['Endpoint']) { $Target.Endpoint }
    else { $Target.Name }
}

$vms = @(Get-KvmVM -Name $Name | Where-Object State -EQ 'running' | Sort-Object Name)
Write-Verbose "Draining $($vms.Count) VM(s) matching '$Name'"
foreach ($vm in $vms) {
    if (-not $PSCmdlet.ShouldProcess($vm.Name, 'Drain (live-migrate away)')) { continue }
    $target = $null
    try {
        $target = & $Destination $vm
        $where = @{ Destination = $target }
        if ($target.PSObject.Properties['Token']) { $where = @{ Destination = $target.Endpoint; Token = $target.Token } }
        $result = Move-KvmVM -VM $vm @where -Compress $Compress -Timeout $Timeout -PassThru
        Write-Log $vm (Get-Label $target) $result ''
        $result
    }
    catch {
        # By type name: the engine's types live in the module's own load context, where [type] literals do not reach.
        $failed = if ($_.TargetObject -and $_.TargetObject.PSObject.TypeNames -contains 'DeltaMigrate.Engine.Migration.MigrationResult') { $_.TargetObject }
        Write-Log $vm (Get-Label $target) $failed "$_"
        # Stop cleanly: what has moved stays moved, the failed VM keeps running here, the rest wait.
        Write-Error -ErrorRecord $_ -ErrorAction Continue
        Write-Warning "Drain stopped at '$($vm.Name)'; $(@($vms).Count - [array]::IndexOf($vms, $vm) - 1) VM(s) not attempted."
        exit 1
    }
}
