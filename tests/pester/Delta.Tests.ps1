# Delta and Lz4: our tunnel between real QEMU processes, RAM compared byte for byte.
BeforeAll {
    . "$PSScriptRoot/TestHelpers.ps1"
    Import-Module $ModuleUnderTest -Force
    $script:RunDir = Initialize-TestRunDirectory
    $script:Slow = @{ Bandwidth = 20MB; MaxDowntime = 0.05; KeepSource = $true }   # kept: RAM is compared afterwards
}

AfterAll {
    Remove-TestRunDirectory $RunDir
}

Describe 'Move-KvmVM -Compress Delta' {
    It 'migrates the dirtying guest with XBZRLE deltas the destination QEMU accepts; RAM identical' {
        $src = Start-TestSource -Name d-src
        $null = Start-TestDestination -Name d-dst -Paused
        $result = Move-KvmVM d-src -Destination d-dst -Compress Delta -PassThru @Slow

        $result.Status | Should -Be 'Completed'
        $result.Mode | Should -Be 'Delta'
        $result.DestinationState | Should -Be 'paused'
        $result.DirtySyncCount | Should -BeGreaterThan 1
        $c = $result.Compression
        $c.XbzrlePages | Should -BeGreaterThan 0 -Because 're-sent pages travel as deltas against our cache'
        $c.EncodedBytes | Should -BeGreaterThan 0
        $c.EncodedBytes / $c.XbzrlePages | Should -BeLessThan 1024 -Because '16 changed bytes per page encode small'
        $c.CacheHits | Should -BeGreaterOrEqual ($c.XbzrlePages + $c.UnchangedPages)
        $c.WireBytes | Should -Be $result.BytesTransferred
        $c.StreamBytes | Should -BeGreaterThan 30MB
        # Rounds counted from the stream itself: all of them, numbered without a gap, adding up to the totals.
        $rounds = @($result.Rounds)
        $rounds.Count | Should -BeGreaterThan 1
        $rounds | ForEach-Object { $_.Exact | Should -BeTrue }
        $rounds.Round | Should -Be (1..$rounds.Count)
        ($rounds | Measure-Object XbzrlePages -Sum).Sum | Should -Be $c.XbzrlePages
        ($rounds | Measure-Object UnchangedPages -Sum).Sum | Should -Be $c.UnchangedPages
        ($rounds | Measure-Object RawPages -Sum).Sum | Should -Be $c.RawPages
        ($rounds | Measure-Object StreamBytes -Sum).Sum | Should -Be $c.StreamBytes
        @($result.Samples).Count | Should -BeGreaterThan $rounds.Count -Because 'the curve has a point per poll'
        Assert-SameMemory d-src d-dst
    }

    It 'is the default mode, and the destination runs on' {
        $src = Start-TestSource -Name dd-src
        $dst = Start-TestDestination -Name dd-dst
        $before = Get-Heartbeat $src.SerialLog
        $result = Move-KvmVM dd-src -Destination dd-dst -PassThru
        $result.Mode | Should -Be 'Delta'
        $result.DestinationState | Should -Be 'running'
        Wait-Until { (Get-Heartbeat $dst.SerialLog) -gt $before } 'the heartbeat to continue on the destination'
    }

    It 'migrates from QEMU 7.2 into QEMU 10.0; RAM identical' {
        $src = Start-TestSource -Name dx-src
        $null = Start-TestDestination -Name dx-dst -Paused -QemuPath $Qemu10
        $result = Move-KvmVM dx-src -Destination dx-dst -Compress Delta -PassThru @Slow
        $result.Status | Should -Be 'Completed'
        $result.Compression.XbzrlePages | Should -BeGreaterThan 0
        Assert-SameMemory dx-src dx-dst
    }
}

Describe 'Move-KvmVM -Compress Lz4' {
    It 'shrinks text-like memory on the wire; RAM identical' {
        $src = Start-TestSource -Name l-src -Append 'ws=32 hot=8 rate=2000 bytes=16 pattern=scatter fill=text'
        $null = Start-TestDestination -Name l-dst -Paused
        $result = Move-KvmVM l-src -Destination l-dst -Compress Lz4 -PassThru @Slow
        $result.Status | Should -Be 'Completed'
        $result.Compression.CompressionRatio | Should -BeGreaterThan 2 -Because 'the guest filled its memory with text LZ4 shrinks about 3x'
        $result.Compression.XbzrlePages | Should -Be 0
        Assert-SameMemory l-src l-dst
    }
}

Describe 'Receive-KvmVM: the destination host runs the receiver' {
    BeforeAll {
        function Start-Receiver([string] $Name, [string] $Token) {
            $ps = [powershell]::Create()
            $null = $ps.AddScript("Import-Module '$ModuleUnderTest'; Receive-KvmVM -Name $Name -Listen 127.0.0.1:0 -Token '$Token' -Timeout 120")
            $output = [Management.Automation.PSDataCollection[psobject]]::new()
            $handle = $ps.BeginInvoke([Management.Automation.PSDataCollection[psobject]]::new(), $output)
            [pscustomobject]@{ PowerShell = $ps; Handle = $handle; Output = $output }
        }
    }

    It 'hands out an endpoint and token, receives the VM, and reports it running' {
        $src = Start-TestSource -Name r-src
        $null = Start-TestDestination -Name r-dst
        $token = 'opyxHNbA5icBAYiQTJTwaXeMnp0_Hba5adk3ReImsTY'
        $receiver = Start-Receiver r-dst $token
        try {
            Wait-Until { $receiver.Output.Count -ge 1 } 'the receiver to be ready'
            $ready = $receiver.Output[0]
            $ready.Token | Should -Be $token
            $ready.Endpoint | Should -Match '^127\.0\.0\.1:\d+$'

            # The ready object binds by property name (Endpoint, Token): the two-shell way is a pipeline.
            $result = $ready | Move-KvmVM r-src -Compress Delta -PassThru
            $result.Status | Should -Be 'Completed'
            $result.DestinationState | Should -Be 'running'
            $result.SourceState | Should -Be 'exited'

            Wait-Until { $receiver.Handle.IsCompleted } 'the receiver to finish'
            $received = $receiver.Output[1]
            $received.Status | Should -Be 'Completed'
            $received.DestinationState | Should -Be 'running'
            # The sender's count stops before the commit's two small frames and the last keepalives.
            [math]::Abs($received.WireBytes - $result.BytesTransferred) | Should -BeLessThan 4096
            # Both sides' logs join on one id; times are UTC.
            $received.MigrationId | Should -Be $result.MigrationId
            $result.MigrationId | Should -Not -Be ([guid]::Empty)
            $result.StartTime.Offset | Should -Be ([TimeSpan]::Zero)
            $result.EndTime | Should -BeGreaterThan $result.StartTime
            $received.EndTime | Should -BeGreaterThan $received.StartTime
        }
        finally { $receiver.PowerShell.Dispose() }
        (Get-KvmVM r-dst).State | Should -Be 'running'
    }

    It 'refuses a sender with the wrong token; the source keeps running and nothing was sent' {
        $src = Start-TestSource -Name t-src
        $null = Start-TestDestination -Name t-dst
        $receiver = Start-Receiver t-dst '8MKypfB6xzYBxZ0HGIrrx3ImuWh37i0ak343tzEsGtI'
        try {
            Wait-Until { $receiver.Output.Count -ge 1 } 'the receiver to be ready'
            { Move-KvmVM t-src -Destination $receiver.Output[0].Endpoint -Token 'rJM-u_dRyUeaLngBQvS-uDRDbjtwhAM4Mv_bWKV0wks' -ErrorAction Stop } |
                Should -Throw -ErrorId 'TunnelAuthenticationFailed,DeltaMigrate.Module.Commands.MoveKvmVMCommand'
        }
        finally { $receiver.PowerShell.Stop(); $receiver.PowerShell.Dispose() }
        (Get-KvmVM t-src).State | Should -Be 'running'
        (Invoke-KvmQmp t-src query-migrate).PSObject.Properties['status'] | Should -BeNullOrEmpty -Because 'QEMU was never asked to migrate'
        (Get-KvmVM t-dst).State | Should -Be 'inmigrate'
    }

    It 'survives the tunnel being cut mid-migration: the source runs on, intact' {
        $src = Start-TestSource -Name cut-src
        $null = Start-TestDestination -Name cut-dst
        $token = 'Vb2cW6gqX0ZJk_TfRt8yN3aHoE1uQmLsPdIz9xYcKw4'
        $receiver = Start-Receiver cut-dst $token
        $cutter = [powershell]::Create()
        try {
            Wait-Until { $receiver.Output.Count -ge 1 } 'the receiver to be ready'
            # Another runspace stops the receiver, and the tunnel with it, once data flows.
            $null = $cutter.AddScript({
                    param($Receiver, $Module)
                    Import-Module $Module
                    $deadline = [DateTime]::UtcNow.AddSeconds(60)
                    while ([DateTime]::UtcNow -lt $deadline) {
                        $m = Invoke-KvmQmp -Name cut-src -Command query-migrate
                        if ($m.PSObject.Properties['ram'] -and $m.ram.transferred -gt 4MB) { $Receiver.Stop(); 'cut'; break }
                        Start-Sleep -Milliseconds 50
                    }
                }).AddArgument($receiver.PowerShell).AddArgument("$ModuleUnderTest")
            $handle = $cutter.BeginInvoke()
            $err = $null
            Move-KvmVM cut-src -Destination $receiver.Output[0].Endpoint -Token $token -Bandwidth 4MB -ErrorAction SilentlyContinue -ErrorVariable err
            $cutter.EndInvoke($handle) | Should -Be 'cut'
        }
        finally { $cutter.Dispose(); $receiver.PowerShell.Dispose() }

        $err[0].FullyQualifiedErrorId | Should -Be 'MigrationFailed,DeltaMigrate.Module.Commands.MoveKvmVMCommand'
        $err[0].TargetObject.SourceState | Should -Be 'running'
        (Get-KvmVM cut-src).State | Should -Be 'running'
        $beat = Get-Heartbeat $src.SerialLog
        Wait-Until { (Get-Heartbeat $src.SerialLog) -gt $beat } 'the source guest to keep running'
        # Intact: it migrates again, and the copy matches byte for byte.
        $null = Start-TestDestination -Name cut-dst2 -Paused
        (Move-KvmVM cut-src -Destination cut-dst2 -PassThru @Slow).Status | Should -Be 'Completed'
        Assert-SameMemory cut-src cut-dst2
    }

    It 'asks for the token when none is given' {
        $src = Start-TestSource -Name n-src
        { Move-KvmVM n-src -Destination 127.0.0.1:9 -Compress Delta -ErrorAction Stop } |
            Should -Throw -ErrorId 'TokenRequired,DeltaMigrate.Module.Commands.MoveKvmVMCommand'
    }
}
