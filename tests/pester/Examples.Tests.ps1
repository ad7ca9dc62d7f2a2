# examples/ are part of the product: run them against real QEMU.
BeforeAll {
    . "$PSScriptRoot/TestHelpers.ps1"
    Import-Module $ModuleUnderTest -Force
    $script:RunDir = Initialize-TestRunDirectory
    $script:Drain = Join-Path $Root 'examples/Invoke-KvmHostDrain.ps1'
}

AfterAll {
    Remove-TestRunDirectory $RunDir
}

Describe 'examples/Invoke-KvmHostDrain.ps1' {
    It 'drains every matching VM, one at a time, and logs each to CSV' {
        $null = Start-TestSource -Name drain-a
        $null = Start-TestSource -Name drain-b
        $null = Start-TestSource -Name keep-c
        $log = Join-Path $RunDir 'drain.csv'

        $results = & $Drain -Name 'drain-*' -LogPath $log -Destination {
            param($vm) Start-TestDestination -Name "$($vm.Name)-new"
        }

        $results.Status | Should -Be 'Completed', 'Completed'
        $rows = Import-Csv $log
        $rows.VM | Should -Be 'drain-a', 'drain-b'
        $rows.Status | Should -Be 'Completed', 'Completed'
        $rows.Destination | Should -Be 'drain-a-new', 'drain-b-new'
        [double]$rows[0].TransferredMB | Should -BeGreaterThan 30
        (Get-KvmVM 'drain-?-new').State | Should -Be 'running', 'running'
        (Get-KvmVM keep-c).State | Should -Be 'running'
    }

    It 'stops cleanly at the first failure: logged, the failed VM still running, the rest untouched' {
        $null = Start-TestSource -Name fail-a
        $null = Start-TestSource -Name fail-b
        $log = Join-Path $RunDir 'fail.csv'

        # A receiver that is not there (nothing listens on port 1), as Receive-KvmVM's ready object.
        $null = & $Drain -Name 'fail-*' -LogPath $log -Compress Native -Destination {
            param($vm) [pscustomobject]@{ Endpoint = '127.0.0.1:1'; Token = 'opyxHNbA5icBAYiQTJTwaXeMnp0_Hba5adk3ReImsTY' }
        } 2>$null 3>$null

        $LASTEXITCODE | Should -Be 1
        $rows = @(Import-Csv $log)
        $rows.Count | Should -Be 1
        $rows[0].VM | Should -Be 'fail-a'
        $rows[0].Status | Should -Be 'Failed'
        $rows[0].Error | Should -Match 'Cannot connect to the migration receiver'
        (Get-KvmVM fail-a).State | Should -Be 'running'
        (Invoke-KvmQmp fail-b query-migrate).PSObject.Properties['status'] | Should -BeNullOrEmpty -Because 'fail-b was never attempted'
    }
}
